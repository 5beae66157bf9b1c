"""Runs made by earlier versions of the code stay usable: their cached teachers are found under
the same key, ablate.py reads their folders without calling them stale, and train.py --resume
continues them."""
import pytest

import plumbing
import train

# Keys of the teacher cache for three configurations, as the code computed them when the
# teacher flags were renamed. A cached teacher is found by this key: a new value for the same
# settings would retrain every teacher of every finished sweep. Change these only together with
# plumbing.TEACHER_RECIPE_VERSION (a deliberate invalidation).
PINNED_CACHE_KEYS = {
    (): {"vit": "f0cc9cf4f4ba3539", "cnn": "efc442ddc8cbab72"},
    ("--teacher-init", "scratch"): {"vit": "3543244396b9e0b5", "cnn": "a67bd1317b945d92"},
    ("--dataset", "hmdb51", "--val-fraction", "0.2", "--teacher-epochs", "7", "--vit-teacher-lr", "0.001"):
        {"vit": "9782230f214d673e", "cnn": "d41f9fae8a9bf4c7"},
}
ROOT = "/nonexistent/hmdb51"  # no synthetic_hmdb51.json there: the key holds no generator settings


@pytest.mark.parametrize("argv", list(PINNED_CACHE_KEYS))
def test_the_teacher_cache_key_of_known_settings_is_unchanged(argv):
    args = train.get_args_parser().parse_args(["--data-root", ROOT, "--workers", "0", "--device", "cpu", *argv])
    plumbing.resolve_defaults(args)
    for role, name in (("vit", "mvit_tiny"), ("cnn", "x3d_m_tiny")):
        key, _ = plumbing.teacher_cache_key(args, role, name, ROOT, 280)
        assert key == PINNED_CACHE_KEYS[argv][role], role
