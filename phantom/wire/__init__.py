"""Strict, canonical wire formats as hand-written ``construct`` schemas; no I/O here.

Every schema ends in ``Terminated``, uses ``Const`` for padding and reserved bytes and
rejects anything that does not rebuild to the same bytes: a non-canonical encoding is a
covert channel for colluding nodes.
"""

from construct import ConstructError, Enum, Int8ub, OneOf


class ProtocolError(Exception):
    """Bytes from a peer that break the protocol: the connection they came on is closed."""


def enumOf(intEnum, width=Int8ub):
    """A field holding a member of C{intEnum}; any other number is malformed."""
    return Enum(OneOf(width, [int(member) for member in intEnum]), intEnum)


def parseStrict(schema, data):
    """
    Parse C{data} with C{schema}, turning every parse failure into L{ProtocolError}.

    @param schema: a construct schema that ends in C{Terminated}.
    @param data: the bytes received.
    @return: the parsed container.
    @raise ProtocolError: the bytes do not match the schema exactly.
    """
    try:
        return schema.parse(data)
    except ConstructError as e:
        raise ProtocolError(f"malformed {schema.name or 'message'}: {e.__class__.__name__}") from e
    except (ValueError, TypeError, OverflowError) as e:
        raise ProtocolError(f"malformed {schema.name or 'message'}: {e}") from e
