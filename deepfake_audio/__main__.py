import sys

from deepfake_audio.cli import main

sys.exit(main())
