"""Turn the real datw.py, sdd.py, rkd.py into a student's skeleton, and into mutants.

The solution files stay the only source of truth: a skeleton is computed from them each time,
never stored. We edit the source text at the line numbers that Python's `ast` reports, rather
than regenerating code from the tree, because `ast` drops comments and every comment outside the
stripped bodies (the reading guide, the shapes, the reasons) is part of what the student reads.

    def datw_weights(teacher_logits, student_logits, T_c=1.0, tau_w=0.1):
        \"\"\"DATW weights (B, K): softmax over teachers ... \"\"\"      <- kept: the task statement
        raise NotImplementedError("E4: ...")                         <- replaces the body

Decorators named in the manifest (`@torch.no_grad()` says "the weights carry no gradient") are
removed from the targets, so the student has to remember them.
"""
import ast
import tokenize

from .manifest import PROJECT, ManifestError


def find_function(tree, qualname, path):
    """The def of `qualname` ("kd_loss", "Phi.forward") in a parsed module, or ManifestError."""
    scope, node = tree.body, None
    for part in qualname.split("."):
        node = next((n for n in scope if isinstance(n, (ast.FunctionDef, ast.ClassDef))
                     and n.name == part), None)
        if node is None:
            raise ManifestError(f"{path} has no {qualname} (looked for {part!r}): was it renamed "
                                "or moved? Update the exercise's targets in exercises.toml.")
        scope = node.body
    if not isinstance(node, ast.FunctionDef):
        raise ManifestError(f"{path}:{node.lineno} {qualname} is a class; a target is a function "
                            f"or a method, e.g. {qualname}.forward.")
    return node


def _body_start(fn, lines):
    """The first line after the def's docstring or, without one, after its signature (1-based).

    Comments between the signature and the first statement belong to the body: they would give
    the answer away. The signature may span lines, so we find its end with the tokenizer.
    """
    first = fn.body[0]
    if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)):
        return first.end_lineno + 1
    source = iter(lines[fn.lineno - 1:])
    header_end = next(t for t in tokenize.generate_tokens(lambda: next(source, ""))
                      if t.type == tokenize.NEWLINE)
    return fn.lineno + header_end.start[0]


def target_spans(source, qualnames, path):
    """{qualname: (first line, last line)} of each def, decorators included (1-based)."""
    tree = ast.parse(source, filename=path)
    spans = {}
    for q in qualnames:
        fn = find_function(tree, q, path)
        start = min([fn.lineno] + [d.lineno for d in fn.decorator_list])
        spans[q] = (start, fn.end_lineno)
    return spans


def strip(source, stubs, path, remove_decorators=()):
    """Replace the body of each function in `stubs` ({qualname: message}) by a raise; a message
    is plain text (no quotes or backslashes).

    Keeps the signature and the docstring (if any); removes the decorators listed in
    `remove_decorators` (dotted names without the call, e.g. "torch.no_grad"). Raises
    ManifestError for a missing target.
    """
    tree = ast.parse(source, filename=path)
    lines = source.splitlines(keepends=True)
    edits = []  # (first line, last line, replacement lines), 1-based and inclusive
    for qualname, message in stubs.items():
        fn = find_function(tree, qualname, path)
        indent = " " * fn.body[0].col_offset
        edits.append((_body_start(fn, lines), fn.end_lineno,
                      [f'{indent}raise NotImplementedError("{message}")\n']))
        for d in fn.decorator_list:
            name = ast.unparse(d.func if isinstance(d, ast.Call) else d)
            if name in remove_decorators:
                edits.append((d.lineno, d.end_lineno, []))
    # Bottom-up, so that an edit never shifts the line numbers of the edits still to come.
    for first, last, new in sorted(edits, reverse=True):
        lines[first - 1:last] = new
    stripped = "".join(lines)
    ast.parse(stripped, filename=path)  # a skeleton that does not parse is a bug of this tool
    return stripped


def mutate(source, mutant, qualnames, path):
    """The source with `mutant.replace` swapped for `mutant.by`; it must occur exactly once,
    inside one of `qualnames` (the exercise's targets), or the mutant is stale."""
    count = source.count(mutant.replace)
    if count != 1:
        raise ManifestError(f"mutant {mutant.label!r}: its `replace` text occurs {count} times in "
                            f"{path}, expected exactly once; update it in exercises.toml:\n"
                            f"{mutant.replace}")
    line = source[:source.index(mutant.replace)].count("\n") + 1
    last = line + mutant.replace.count("\n")
    spans = target_spans(source, qualnames, path)
    if not any(a <= line and last <= b for a, b in spans.values()):
        raise ManifestError(f"mutant {mutant.label!r}: {path}:{line} is outside the exercise's "
                            f"targets {list(qualnames)}; a mutant changes the student's code only.")
    mutated = source.replace(mutant.replace, mutant.by)
    try:
        ast.parse(mutated, filename=path)
    except SyntaxError as e:  # a mutant must fail tests, not imports
        raise ManifestError(f"mutant {mutant.label!r} does not parse ({e}); fix its `by` text.")
    return mutated


def stub_message(exercise, target):
    return f"{exercise.id}: write {target.qualname}, then: python -m exercises check {exercise.id}"


def variant(manifest, stripped=(), mutant=None):
    """{path: source} for every file with targets: the targets of the exercises in `stripped`
    become stubs, `mutant` (if any) is applied, everything else is the real code."""
    files = {path: (PROJECT / path).read_text() for path in manifest.paths}
    if mutant is not None:
        owner = manifest[mutant.exercise]
        # The mutant's file: the one of its exercise's files that holds its text (all of an
        # exercise's targets sit in one file today; `mutate` complains when none holds it).
        path = next((p for p in owner.paths if mutant.replace in files[p]), owner.paths[0])
        files[path] = mutate(files[path], mutant,
                             [t.qualname for t in owner.targets if t.path == path], path)
    for path in files:
        stubs = {t.qualname: stub_message(ex, t) for ex in stripped for t in ex.targets
                 if t.path == path}
        if stubs:
            files[path] = strip(files[path], stubs, path, manifest.remove_decorators)
    return files


def check_manifest(manifest):
    """Build every exercise's skeleton and every mutant once: ManifestError names the first
    target that no longer exists and the first mutant whose text is gone."""
    for ex in manifest.exercises:
        variant(manifest, stripped=[ex])
        for mutant in ex.mutants:
            variant(manifest, mutant=mutant)
