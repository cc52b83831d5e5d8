"""English stop words: the words of a query that say little about which passage answers.

One list, PostgreSQL's ``english.stop`` (Snowball's English list): the words its
``english`` configuration leaves out of the keyword index. Snippets do not mark them,
fusion does not count them towards a chunk's coverage of the query (with a few changes
of its own, see :mod:`gristmill.index.fusion`), and the retrieval benchmark keeps them
out of the questions it makes.
"""

from __future__ import annotations

__all__ = ["STOP_WORDS"]

STOP_WORDS = frozenset("""
    i me my myself we our ours ourselves you your yours yourself yourselves he him his
    himself she her hers herself it its itself they them their theirs themselves what
    which who whom this that these those am is are was were be been being have has had
    having do does did doing a an the and but if or because as until while of at by for
    with about against between into through during before after above below to from up
    down in out on off over under again further then once here there when where why how
    all any both each few more most other some such no nor not only own same so than too
    very s t can will just don should now""".split())
