"""Every command answers a bad option before TensorFlow is imported: the way a user types it
(``python -m tfxr.X [command] --no-such-option``, a value out of its bounds), from another
working directory, one ``tfxr: error:`` line naming the option, exit 2, nothing written, and
neither TensorFlow nor Keras, KerasCV or Horovod in the process (checked by running the same
command line through a wrapper that runs the module as ``python -m`` does and then lists
what was imported)."""
from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import REPO, run, tfxr

ENV = {"PYTHONPATH": str(REPO)}

#: what a bad option must not have imported
HEAVY = ("tensorflow", "keras", "keras_cv", "horovod")

#: runs ``argv[1:]`` as ``python -m MODULE OPTIONS...`` would (runpy, as __main__, sys.argv set),
#: then prints which of HEAVY were imported as the last stdout line; exits with the command's code
PROBE = f"""
import json, runpy, sys
sys.argv = sys.argv[1:]
code = 0
try:
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
except SystemExit as e:
    code = e.code
finally:
    print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))
sys.exit(code)
"""

#: each command as typed (with the arguments it requires) and, where it has one, a bounded
#: option given a value outside its bounds
COMMANDS = [
    (["tfxr.train"], ["--batch-size", "0"]),
    (["tfxr.evaluate"], ["--batch-size", "0"]),
    (["tfxr.evaluate", "classifier"], ["--batch-size", "0"]),
    (["tfxr.evaluate", "detection"], ["--batch-size", "0"]),
    (["tfxr.evaluate", "gan"], ["--batch-size", "0"]),
    (["tfxr.gan", "train"], ["--batch-size", "0"]),
    (["tfxr.gan", "sample"], ["--n", "0"]),
    (["tfxr.gan", "balance"], ["--target-ratio", "2"]),
    (["tfxr.gan", "compare-optimizers"], ["--batch-size", "0"]),
    (["tfxr.predict"], ["--batch-size", "0"]),
    (["tfxr.localize"], ["--batch-size", "0"]),
    (["tfxr.report"], ["--batch-size", "0"]),
    (["tfxr.stats", "tfrec"], None),
    (["tfxr.tfrecords", "write"], ["--workers", "0"]),
    (["tfxr.tfrecords", "verify", "tfrec"], None),
    (["tfxr.benchmark"], ["--steps", "0"]),
    (["tfxr.benchmark", "train"], ["--batch-size", "0"]),
    (["tfxr.benchmark", "convert"], ["--workers", "0"]),
    (["tfxr.benchmark", "input"], ["--batch-size", "0"]),
    (["tfxr.benchmark", "timeline", "timeline.json"], None),
    (["tfxr.benchmark", "profile"], ["--batch-size", "0"]),
    (["tfxr.launch"], ["--np", "0"]),
    (["tfxr.distributed"], ["--np", "0"]),
    (["tfxr.extract", "images_001.tar.gz", "out"], None),
    (["tfxr.detect", "train"], ["--batch-size", "0"]),
]

CASES = [pytest.param(command, ["--no-such-option"], id=" ".join(command[:2]) + " --no-such-option")
         for command, _ in COMMANDS]
CASES += [pytest.param(command, bad, id=" ".join(command[:2] + bad)) for command, bad in COMMANDS if bad]


@pytest.mark.parametrize("command,options", CASES)
def test_a_bad_option_is_one_line_before_tensorflow(tmp_path, command, options):
    typed = tfxr(*command, *options, cwd=tmp_path, check=False, env=ENV)
    assert typed.returncode == 2, (typed.returncode, typed.stderr)
    assert "Traceback" not in typed.stderr, typed.stderr
    lines = typed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tfxr: error: ") and options[0] in lines[0], typed.stderr
    assert typed.stdout == ""
    assert list(tmp_path.iterdir()) == []                    # nothing written

    probed = run([sys.executable, "-c", PROBE, *command, *options], cwd=tmp_path, check=False, env=ENV)
    assert (probed.returncode, probed.stderr) == (typed.returncode, typed.stderr)
    assert json.loads(probed.stdout.splitlines()[-1]) == [], f"{' '.join(command)} imported them before the error"
