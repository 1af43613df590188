"""Symbol table of the synthesizer's text front end.

The table has 66 entries; a symbol's index is its id, and the encoder embedding
of the Tacotron model is sized by ``NUM_SYMBOLS``. There are no ARPAbet symbols.
"""

PAD: str = "_"
EOS: str = "~"
LETTERS: str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
PUNCTUATION: str = "!'\"(),-.:;? "

SYMBOLS: tuple[str, ...] = (PAD, EOS, *LETTERS, *PUNCTUATION)
NUM_SYMBOLS: int = len(SYMBOLS)

PAD_ID: int = SYMBOLS.index(PAD)
EOS_ID: int = SYMBOLS.index(EOS)
# Letters occupy one contiguous block of ids (2..53).
FIRST_LETTER_ID: int = SYMBOLS.index(LETTERS[0])
LAST_LETTER_ID: int = SYMBOLS.index(LETTERS[-1])

SYMBOL_TO_ID: dict[str, int] = {s: i for i, s in enumerate(SYMBOLS)}
ID_TO_SYMBOL: dict[int, str] = dict(enumerate(SYMBOLS))

# Prefix marking an ARPAbet token; no such token is in the table.
ARPABET_PREFIX: str = "@"

assert NUM_SYMBOLS == 66
