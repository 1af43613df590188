"""`python -m vocoder.native [--force]`: build the native WaveRNN loop and say whether it is used."""
import sys

from vocoder.native import build, library, reason

path = build(force="--force" in sys.argv)
print(f"{path}: {'in use' if library() is not None else 'not used: ' + reason()}")
