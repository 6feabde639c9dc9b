"""
The property-test pattern every wire format follows: valid messages round-trip; mutated bytes
either parse to something canonical or raise L{ProtocolError}; a stream decoder gives the same
messages however the stream is cut.
"""

from hypothesis import strategies as st

from phantom.wire import ProtocolError, parseStrict

BASIC_MUTATIONS = ("flip", "truncate", "extend", "replace")


@st.composite
def mutated(draw, valid, extraMutations=()):
    """
    A message drawn from C{valid} (bytes), then tampered with: a flipped bit, truncated, extended,
    or replaced by random bytes; or by one of C{extraMutations}, functions C{(draw, bytearray) ->
    bytearray} for what a format has beyond those.
    """
    data = bytearray(draw(valid))
    how = draw(st.sampled_from(BASIC_MUTATIONS + tuple(extraMutations)))
    if how == "flip":
        data[draw(st.integers(0, len(data) - 1))] ^= 1 << draw(st.integers(0, 7))
    elif how == "truncate":
        del data[draw(st.integers(0, len(data) - 1)) :]
    elif how == "extend":
        data += draw(st.binary(min_size=1, max_size=8))
    elif how == "replace":
        data = bytearray(draw(st.binary(max_size=80)))
    else:
        data = how(draw, data)
    return bytes(data)


def assertCanonicalOrRejected(testCase, schema, data):
    """C{data} is refused by C{schema} with L{ProtocolError}, or parses and rebuilds to itself."""
    try:
        parsed = parseStrict(schema, data)
    except ProtocolError:
        return
    testCase.assertEqual(schema.build(parsed), data)


def feedInPieces(decoder, data, cuts):
    """Feed C{data} to a sans-io C{decoder} cut at C{cuts}; all that comes out, in order."""
    decoded = []
    start = 0
    for cut in sorted(cuts) + [len(data)]:
        decoded += decoder.feed(data[start:cut])
        start = cut
    return decoded
