"""The exercise manifest, exercises.toml: read it and check it against the code it names.

Every other part of the tool asks this module what an exercise is: its targets (the functions a
student writes, as qualified names such as `datw.kd_loss` or `sdd.Phi.forward`), its
prerequisites, hints and mutants. A manifest that no longer matches the code (a renamed target,
an unknown prerequisite, a mutant whose text is gone) raises ManifestError naming the entry and
what to change, so a stale exercise can never be handed out silently.
"""
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
PROJECT = PACKAGE.parent
MANIFEST = PACKAGE / "exercises.toml"


class ManifestError(Exception):
    """exercises.toml disagrees with the code or with itself; the message says what to change."""


@dataclass(frozen=True)
class Target:
    """One function a student writes: `path` relative to the project, `qualname` inside it."""
    name: str  # as written in the manifest, e.g. "sdd.Phi.forward"
    path: str  # "sdd.py"
    qualname: str  # "Phi.forward"


@dataclass(frozen=True)
class Mutant:
    """A plausible wrong solution: the real file with `replace` swapped for `by`, exactly once."""
    exercise: str
    name: str
    replace: str
    by: str

    @property
    def label(self):
        return f"{self.exercise}: {self.name}"


@dataclass(frozen=True)
class Guard:
    """A reading question: `answer` names a test; `tests` are the ones that catch `mutant`."""
    answer: str
    mutant: str
    tests: tuple


@dataclass(frozen=True)
class Exercise:
    id: str
    title: str
    paper: tuple
    targets: tuple
    prerequisites: tuple
    minutes: int
    read_first: str
    hints: tuple
    mutants: tuple
    guards: tuple

    @property
    def paths(self):
        """The project files that hold this exercise's targets, in manifest order."""
        return tuple(dict.fromkeys(t.path for t in self.targets))


@dataclass(frozen=True)
class Manifest:
    exercises: tuple
    remove_decorators: tuple

    def __getitem__(self, exercise_id):
        for ex in self.exercises:
            if ex.id == exercise_id:
                return ex
        known = ", ".join(ex.id for ex in self.exercises)
        raise ManifestError(f"no exercise {exercise_id!r}; the exercises are {known}.")

    def select(self, ids):
        """The exercises with these ids in manifest order (all of them for an empty list)."""
        wanted = [self[i].id for i in ids]  # raises on an unknown id
        return tuple(ex for ex in self.exercises if not wanted or ex.id in wanted)

    def closure(self, exercise):
        """Every exercise `exercise` builds on, directly or through another prerequisite."""
        found, todo = set(), list(exercise.prerequisites)
        while todo:
            pid = todo.pop()
            if pid not in found:
                found.add(pid)
                todo.extend(self[pid].prerequisites)
        return tuple(ex for ex in self.exercises if ex.id in found)

    @property
    def paths(self):
        """Every project file that holds a target, in manifest order."""
        return tuple(dict.fromkeys(p for ex in self.exercises for p in ex.paths))

    def mutant(self, label):
        for ex in self.exercises:
            for m in ex.mutants:
                if m.label == label:
                    return m
        raise ManifestError(f"no mutant {label!r}; name one as '<exercise id>: <mutant name>'.")


def resolve_target(name):
    """'sdd.Phi.forward' -> Target('sdd.py', 'Phi.forward'): the longest prefix that is a file."""
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        path = "/".join(parts[:i]) + ".py"
        if (PROJECT / path).is_file():
            return Target(name, path, ".".join(parts[i:]))
    raise ManifestError(f"target {name!r}: no file of the project matches it; write it as "
                        "<module>.<function> or <module>.<Class>.<method>, e.g. datw.kd_loss.")


def _required(entry, key, where):
    if key not in entry:
        raise ManifestError(f"{where}: missing key {key!r} in {MANIFEST.name}.")
    return entry[key]


def load(path=MANIFEST):
    """Read and check the manifest: ids, prerequisites (earlier exercises only) and targets."""
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    exercises, seen = [], set()
    for entry in raw.get("exercise", []):
        ex_id = _required(entry, "id", "an [[exercise]] entry")
        where = f"exercise {ex_id}"
        if not re.fullmatch(r"E\d+", ex_id) or ex_id in seen:
            raise ManifestError(f"{where}: ids are E<number> and unique; got {ex_id!r} again "
                                "or in another form.")
        for pid in entry.get("prerequisites", []):
            # Earlier exercises only: a student works through the list in order and is never
            # asked to finish a later exercise first (and cycles are impossible).
            if pid not in seen:
                raise ManifestError(f"{where}: prerequisite {pid!r} is not an earlier exercise.")
        seen.add(ex_id)
        mutants = tuple(Mutant(ex_id, _required(m, "name", f"{where}, a mutant"),
                               _required(m, "replace", f"{where}, mutant {m.get('name')!r}"),
                               _required(m, "by", f"{where}, mutant {m.get('name')!r}"))
                        for m in entry.get("mutant", []))
        guards = tuple(Guard(g["answer"], g["mutant"], tuple(g["tests"]))
                       for g in entry.get("guard", []))
        exercises.append(Exercise(
            id=ex_id, title=_required(entry, "title", where), paper=tuple(entry.get("paper", [])),
            targets=tuple(resolve_target(t) for t in _required(entry, "targets", where)),
            prerequisites=tuple(entry.get("prerequisites", [])),
            minutes=_required(entry, "minutes", where),
            read_first=_required(entry, "read_first", where),
            hints=tuple(entry.get("hints", [])), mutants=mutants, guards=guards))
    remove = raw.get("skeleton", {}).get("remove_decorators", [])
    manifest = Manifest(tuple(exercises), tuple(remove))
    targets = [t.name for ex in manifest.exercises for t in ex.targets]
    twice = sorted({t for t in targets if targets.count(t) > 1})
    if twice:
        raise ManifestError(f"targets {twice} belong to more than one exercise; give each to one.")
    names = [Path(p).name for p in manifest.paths]
    if len(set(names)) != len(names):
        raise ManifestError(f"the files with targets {list(manifest.paths)} must have different "
                            "names: a student's work folder holds them side by side.")
    for ex in manifest.exercises:
        for guard in ex.guards:
            manifest.mutant(guard.mutant)  # raises when the guard names no mutant
    return manifest
