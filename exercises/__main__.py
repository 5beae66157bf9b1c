"""Classroom exercises: write the paper's ideas yourself, tested automatically (EXERCISES.md)."""
import argparse
import sys

from . import manifest as manifest_file
from .manifest import ManifestError
from .sandbox import TIMEOUT
from .selftest import SelftestError, selftest
from .student import WORK_DIR, StudentError, check, run, start


def get_args_parser():
    p = argparse.ArgumentParser(prog="python -m exercises", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the exercises in order, with time estimates and prerequisites")
    s = sub.add_parser("start", help="write the skeletons into a new work folder; never overwrites")
    s.add_argument("--only", nargs="+", default=[], metavar="ID",
                   help="only these exercises, e.g. E6 E7")
    c = sub.add_parser("check", help="test your work folder, PASS/FAIL per exercise")
    c.add_argument("ids", nargs="*", metavar="ID", help="exercises to check (default: all started)")
    c.add_argument("-v", "--verbose", action="store_true", help="also print pytest's full output")
    r = sub.add_parser("run", help="run a command with your files (run -- python train.py)")
    r.add_argument("cmd", nargs=argparse.REMAINDER, help="the command, after --")
    t = sub.add_parser("selftest", help="prove every exercise's tests bite (CI runs this)")
    t.add_argument("--only", nargs="+", default=[], metavar="ID", help="only these exercises")
    for parser in (s, c, r):
        parser.add_argument("--dir", default=WORK_DIR,
                            help=f"work folder (default: {WORK_DIR.name}/)")
    for parser in (c, t):
        parser.add_argument("--timeout", type=float, default=TIMEOUT, metavar="SECONDS",
                            help="time limit on each exercise's tests; one that runs longer "
                                 "(an endless loop?) is stopped, fails, and the next goes on "
                                 f"(default: {TIMEOUT} s)")
    r.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="stop the command, and everything it started, after this long "
                        "(default: no limit, as a training run takes as long as it takes)")
    return p


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    try:
        manifest = manifest_file.load()
        if args.command == "list":
            for ex in manifest.exercises:
                after = f"; after {', '.join(ex.prerequisites)}" if ex.prerequisites else ""
                print(f"{ex.id:4s} {ex.minutes:3d} min  {ex.title}  ({', '.join(ex.paper)}{after})")
            return 0
        if args.command == "start":
            start(manifest, args.only, args.dir)
            return 0
        if args.command == "check":
            return 0 if check(manifest, args.ids, args.dir, args.verbose, args.timeout) else 1
        if args.command == "run":
            cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
            return run(manifest, cmd, args.dir, args.timeout)
        return 0 if selftest(manifest, args.only, args.timeout) else 1
    except (ManifestError, StudentError, SelftestError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
