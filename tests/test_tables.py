"""The one table aligner every printed table uses."""

from memgang.tables import aligned


def test_columns_are_padded_to_their_widest_cell_and_aligned_as_asked() -> None:
    rows = [["name", "n", "note"], ["alpha", "1234", "x"], ["b", "5", "longer note"]]
    assert aligned(rows, left=(0, -1)) == [
        "name      n  note",
        "alpha  1234  x",
        "b         5  longer note",
    ]
    assert aligned(rows)[1] == "alpha  1234            x"  # right-aligned by default
    assert aligned([]) == []
