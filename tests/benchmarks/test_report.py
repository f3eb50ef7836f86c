from benchmarks.report import write_section


def test_sections_are_replaced_in_place_and_others_kept(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    write_section(path, "a", "first a")
    write_section(path, "b", "first b\n")
    write_section(path, "a", "second a")
    text = path.read_text()
    assert text == ("# Benchmarks\n\n<!-- BEGIN a -->\nsecond a\n<!-- END a -->\n\n"
                    "<!-- BEGIN b -->\nfirst b\n<!-- END b -->\n")
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind
