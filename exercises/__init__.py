"""Classroom exercises: students re-implement each idea of the paper, checked automatically.

The real datw.py, sdd.py and rkd.py are the solution and stay unmarked. exercises.toml lists the
exercises; the student's skeletons are generated from the real files (skeleton.py), tests are
run in a temporary copy of the project with the student's files swapped in (sandbox.py), and
`selftest` proves that each exercise's tests pass on the solution, fail on the skeleton and
catch the plausible mistakes listed as mutants. EXERCISES.md is the student's guide;
`python -m exercises --help` lists the commands.
"""
