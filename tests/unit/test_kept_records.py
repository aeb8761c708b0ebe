"""The digest records stores keep (fsstore.hashing), and the S3 store's
object metadata: whatever is planted where a record belongs, it is either
exactly a record or not trusted."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fsstore.backends.s3.digests import as_metadata, from_metadata
from fsstore.hashing import (
    KeptDigests,
    encode_record,
    kept_as_record,
    kept_from_record,
    parse_record,
)

kept_digests = st.builds(
    KeptDigests,
    st.text(max_size=40),
    st.text(max_size=140),
    st.text(max_size=12),
    st.integers(min_value=0, max_value=2**63),
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["md5", "multihash", "hashing_algo", "size", "id", "x"]),
            inner,
            max_size=6,
        )
    ),
    max_leaves=12,
)


@given(kept_digests)
def test_a_record_reads_back_as_written(kept):
    assert kept_from_record(parse_record(encode_record(kept))) == kept
    assert parse_record(encode_record(kept, id="img"))["id"] == "img"


@given(json_values)
def test_anything_else_is_none_or_a_whole_record(value):
    kept = kept_from_record(value)
    if kept is None:
        return
    assert all(type(field) is str for field in kept[:3])
    assert type(kept.size) is int and kept.size >= 0
    assert kept_as_record(kept) == {k: value[k] for k in kept_as_record(kept)}


def test_sizes_that_are_not_counts_are_refused():
    record = kept_as_record(KeptDigests("a", "b", "sha512", 1))
    for size in (True, -1, 1.0, "1", None):
        assert kept_from_record({**record, "size": size}) is None


@given(kept_digests.filter(lambda k: all(f.isascii() for f in k[:3])))
def test_metadata_reads_back_in_any_case(kept):
    metadata = as_metadata(kept)
    assert from_metadata(metadata) == kept
    # Swift's s3api answers Fsstore-Md5, AWS fsstore-md5.
    assert from_metadata({k.title(): v for k, v in metadata.items()}) == kept
    assert from_metadata({k.upper(): v for k, v in metadata.items()}) == kept


def test_metadata_missing_a_field_is_none():
    metadata = as_metadata(KeptDigests("a", "b", "sha512", 3))
    for name in metadata:
        assert from_metadata({k: v for k, v in metadata.items() if k != name}) is None
    for size in ("three", "-1", "", "1.0", "\u0663"):
        assert from_metadata({**metadata, "fsstore-size": size}) is None
