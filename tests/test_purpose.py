"""purpose.md parsing: the happy path, and one clear error per kind of bad input."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from swarm.purpose import (
    MAX_BYTES,
    Budgets,
    PurposeError,
    RootTask,
    Tuning,
    load_purpose,
    parse_purpose,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def fails(text: str, source: str = "purpose.md") -> str:
    """Parse text that must be refused; return the error message."""
    with pytest.raises(PurposeError) as info:
        parse_purpose(text, source)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(source)
    return message


def front(yaml: str, body: str = "# Count the primes below 100\n") -> str:
    return f"---\n{yaml}---\n{body}"


# ---------------------------------------------------------------- happy paths


def test_example_purpose_parses() -> None:
    purpose = load_purpose(EXAMPLES / "purpose.md")
    assert purpose.title == "A field guide to five common garden birds"
    assert purpose.name == "garden-birds"
    assert purpose.budgets.max_tasks == 40
    assert purpose.budgets.max_depth == 2
    assert purpose.budgets.deadline_s == 1800.0
    assert len(purpose.tasks) == 3
    assert purpose.tasks[0].title == "Identification"
    assert purpose.tasks[0].tags == ("birds", "writing")


def test_plain_markdown_gets_defaults() -> None:
    purpose = parse_purpose("# Sort a list\n\nExplain merge sort to a child.\n")
    assert purpose.title == "Sort a list"
    assert purpose.text == "# Sort a list\n\nExplain merge sort to a child."
    assert purpose.budgets == Budgets()
    assert purpose.tuning == Tuning()
    assert purpose.sandbox == "auto"
    assert purpose.name == ""
    assert purpose.tasks == ()


def test_front_matter_sets_every_section() -> None:
    text = front(
        "name: primes\nsandbox: local\n"
        "budgets:\n  max_depth: 0\n  deadline_s: 90\n  lease_s: 5\n"
        "pheromone:\n  rho_fail: 1\n  epsilon: 0\n  candidates: 256\n  q: 0.5\n"
    )
    purpose = parse_purpose(text)
    assert purpose.name == "primes"
    assert purpose.sandbox == "local"
    assert purpose.budgets == Budgets(max_depth=0, deadline_s=90.0, lease_s=5.0)
    assert isinstance(purpose.budgets.deadline_s, float)  # an int where a float is expected
    assert purpose.tuning == Tuning(rho_fail=1.0, epsilon=0.0, candidates=256, q=0.5)
    assert purpose.text == "# Count the primes below 100"


def test_empty_front_matter_is_allowed() -> None:
    assert parse_purpose("---\n---\nFind a rhyme for orange.").budgets == Budgets()


def test_crlf_and_bom_are_tolerated() -> None:
    text = "\ufeff---\r\nname: x\r\n---\r\n# Title here\r\nBody.\r\n"
    purpose = parse_purpose(text)
    assert purpose.name == "x"
    assert purpose.title == "Title here"


def test_title_falls_back_to_first_line_trimmed() -> None:
    long_line = "word " * 60
    purpose = parse_purpose(f"\n\n{long_line}\n\nmore text")
    assert purpose.title == long_line[:120].rstrip()
    assert len(purpose.title) <= 120


def test_title_skips_subheadings_and_code_comments() -> None:
    text = "## Background\nSome context.\n```python\n# not a title\n```\n# Real title #\n"
    assert parse_purpose(text).title == "Real title"
    assert parse_purpose("## Background\nSome context.\n").title == "Background"


def test_tasks_section_items() -> None:
    text = (
        "# Plan a trip\n\n## Tasks\n\nIntro sentence, not a task.\n\n"
        "- Trains: compare rail passes [tags: travel, money]\n"
        "* Hotels\n"
        "  near the old town\n"
        "3. Food: list local dishes: with prices\n"
        "\n## Notes\n\n- not a task\n"
    )
    tasks = parse_purpose(text).tasks
    assert tasks == (
        RootTask("Trains", "compare rail passes", ("travel", "money")),
        RootTask("Hotels near the old town"),
        RootTask("Food", "list local dishes: with prices"),
    )


def test_nested_items_belong_to_their_parent() -> None:
    text = "# X\n## Tasks\n- Parent: top\n  - child one\n  - child two\n- Second\n"
    tasks = parse_purpose(text).tasks
    assert [t.title for t in tasks] == ["Parent", "Second"]
    assert tasks[0].detail == "top - child one - child two"


def test_subsection_inside_tasks_does_not_end_it() -> None:
    text = "# X\n## Tasks\n### Part one\n- A\n### Part two\n- B\n"
    assert [t.title for t in parse_purpose(text).tasks] == ["A", "B"]


def test_tasks_fill_max_children_exactly() -> None:
    items = "".join(f"- Task {i}\n" for i in range(3))
    text = front("budgets:\n  max_children: 3\n", f"# X\n## Tasks\n{items}")
    assert len(parse_purpose(text).tasks) == 3


# ---------------------------------------------------------------- files


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PurposeError, match="no such file"):
        load_purpose(tmp_path / "nope.md")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(PurposeError, match="is a directory"):
        load_purpose(tmp_path)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (PermissionError(13, "Permission denied"), "not readable (permission denied)"),
        (OSError(5, "Input/output error"), "cannot read: Input/output error"),
    ],
)
def test_unreadable_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: OSError, expected: str
) -> None:
    path = tmp_path / "purpose.md"
    path.write_text("# Fine")

    def refuse(*args: object, **kwargs: object) -> None:
        raise error

    # chmod cannot make a file unreadable for root, which runs CI containers.
    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(PurposeError) as info:
        load_purpose(path)
    assert str(info.value) == f"{path}: {expected}"


def test_not_a_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.md"
    os.mkfifo(fifo)
    with pytest.raises(PurposeError, match="is not a regular file"):
        load_purpose(fifo)


def test_too_large_file(tmp_path: Path) -> None:
    path = tmp_path / "big.md"
    path.write_text("# Big\n" + "a" * MAX_BYTES)
    with pytest.raises(PurposeError, match="larger than 256 KiB"):
        load_purpose(path)


def test_too_large_text() -> None:
    assert "larger than 256 KiB" in fails("# Big\n" + "é" * (MAX_BYTES // 2))


def test_not_utf8_names_the_offset(tmp_path: Path) -> None:
    path = tmp_path / "latin1.md"
    path.write_bytes("# Café\n".encode("latin-1"))
    with pytest.raises(PurposeError, match=r"not UTF-8 .*0xe9 at byte offset 5"):
        load_purpose(path)


def test_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "image.md"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(PurposeError, match=r"binary file .*offset 8"):
        load_purpose(path)


def test_nul_in_text() -> None:
    assert "binary" in fails("# Title\x00 more")


def test_unpaired_surrogate() -> None:
    assert "unpaired surrogate" in fails("# Title \udc80")


# ---------------------------------------------------------------- front matter


def test_front_matter_never_closed() -> None:
    assert fails("---\nname: x\n# Title\n") == (
        "purpose.md:1: front matter opened with '---' but never closed by a '---' line"
    )


def test_yaml_syntax_error_gives_file_line() -> None:
    message = fails("---\nname: x\nbudgets:\n  max_tasks: [40\n---\n# T\n")
    assert message.startswith("purpose.md:4: front matter is not valid YAML")


def test_yaml_error_on_a_later_line() -> None:
    message = fails("---\nname: x\nsandbox: local\n  bad: indent\n---\n# T\n")
    assert message.startswith("purpose.md:4:")


@pytest.mark.parametrize("yaml", ["- a\n- b\n", "just a string\n", "42\n"])
def test_front_matter_not_a_mapping(yaml: str) -> None:
    assert "front matter must be a mapping" in fails(front(yaml))


def test_duplicate_key() -> None:
    message = fails(front("name: a\nname: b\n"))
    assert message == "purpose.md:3: duplicate key 'name' (first at line 2)"


def test_unknown_top_level_key_with_suggestion() -> None:
    message = fails(front("name: x\nbudget:\n  max_tasks: 3\n"))
    assert message == "purpose.md:3: unknown front matter key 'budget' (did you mean 'budgets'?)"


def test_unknown_budget_key_with_suggestion() -> None:
    message = fails(front("budgets:\n  max_task: 40\n"))
    assert message == "purpose.md:3: unknown budgets key 'max_task' (did you mean 'max_tasks'?)"


def test_unknown_pheromone_key_lists_known_keys() -> None:
    message = fails(front("pheromone:\n  zzz: 1\n"))
    assert "unknown pheromone key 'zzz' (known keys: half_life_s, initial" in message
    assert message.startswith("purpose.md:3:")


def test_non_string_key() -> None:
    assert "unknown budgets key 7" in fails(front("budgets:\n  7: 1\n"))


@pytest.mark.parametrize("value", ["[1]", "5", "yes"])
def test_section_not_a_mapping(value: str) -> None:
    message = fails(front(f"budgets: {value}\n"))
    assert message.startswith("purpose.md:2: 'budgets' must be a mapping")


@pytest.mark.parametrize(
    ("yaml", "expected"),
    [
        (
            "budgets:\n  max_depth: true\n",
            "budgets.max_depth must be a whole number, got a boolean",
        ),
        ("budgets:\n  max_tasks: 2.5\n", "budgets.max_tasks must be a whole number, got 2.5"),
        ("budgets:\n  max_tasks: '40'\n", "got a string '40' (remove the quotes)"),
        ("budgets:\n  deadline_s: '90'\n", "budgets.deadline_s must be a number, got a string"),
        ("budgets:\n  deadline_s: .inf\n", "budgets.deadline_s must be a finite number"),
        ("pheromone:\n  alpha: .nan\n", "pheromone.alpha must be a finite number"),
        ("pheromone:\n  epsilon: no\n", "pheromone.epsilon must be a number, got a boolean"),
        ("pheromone:\n  candidates: 16.0\n", "pheromone.candidates must be a whole number"),
        ("pheromone:\n  q: null\n", "pheromone.q must be a number, got nothing"),
        ("name: 5\n", "'name' must be a string, got an integer"),
        ("name: [a]\n", "'name' must be a string, got a list"),
    ],
)
def test_wrong_types(yaml: str, expected: str) -> None:
    assert expected in fails(front(yaml))


def test_name_must_be_one_short_line() -> None:
    assert "'name' must be one line" in fails(front(f"name: {'n' * 121}\n"))
    assert "'name' must be one line" in fails(front('name: "a\\nb"\n'))


# Out-of-range values as the message shows them (YAML 1.1 needs the dot in `1.0e+300`).
SHOWN = {"1.0e+300": "1e+300", "1.0e-300": "1e-300", "1.0e-310": "1e-310"}


@pytest.mark.parametrize(
    ("key", "value", "rule"),
    [
        ("max_tasks", "0", "must be between 1 and 1000000"),
        ("max_tasks", "1000001", "must be between 1 and 1000000"),
        ("max_depth", "-1", "must be between 0 and 16"),
        ("max_depth", "17", "must be between 0 and 16"),
        ("max_tokens", "0", "must be between 1 and 1000000000000"),
        ("max_tokens", "1000000000001", "must be between 1 and 1000000000000"),
        ("deadline_s", "0", "must be > 0 and <= 10000000"),
        ("deadline_s", "1.0e+300", "must be > 0 and <= 10000000"),
        ("max_attempts", "0", "must be between 1 and 100"),
        ("max_attempts", "101", "must be between 1 and 100"),
        ("max_children", "0", "must be between 1 and 32"),
        ("max_children", "33", "must be between 1 and 32"),
        ("lease_s", "4.5", "must be between 5 and 86400"),
        ("lease_s", "86401", "must be between 5 and 86400"),
    ],
)
def test_budget_ranges(key: str, value: str, rule: str) -> None:
    message = fails(front(f"budgets:\n  {key}: {value}\n"))
    assert message == f"purpose.md:3: budgets.{key} {rule}, got {SHOWN.get(value, value)}"


@pytest.mark.parametrize(
    ("key", "value", "rule"),
    [
        ("half_life_s", "0", "must be between 0.1 and 1000000000"),
        ("half_life_s", "1.0e-300", "must be between 0.1 and 1000000000"),
        ("half_life_s", "1.0e-310", "must be between 0.1 and 1000000000"),
        ("initial", "0", "must be > 0 and <= 1000000"),
        ("initial", "1.0e+300", "must be > 0 and <= 1000000"),
        ("q", "-0.1", "must be between 0 and 1000000"),
        ("rho_fail", "0", "must be > 0 and <= 1"),
        ("rho_fail", "1.5", "must be > 0 and <= 1"),
        ("alpha", "-1", "must be between 0 and 10"),
        ("alpha", "11", "must be between 0 and 10"),
        ("beta", "-1", "must be between 0 and 10"),
        ("epsilon", "-0.1", "must be between 0 and 1"),
        ("epsilon", "1.1", "must be between 0 and 1"),
        ("candidates", "0", "must be between 1 and 256"),
        ("candidates", "257", "must be between 1 and 256"),
        ("synth_bonus", "-1", "must be between 0 and 1000000"),
    ],
)
def test_tuning_ranges(key: str, value: str, rule: str) -> None:
    message = fails(front(f"pheromone:\n  {key}: {value}\n"))
    assert message == f"purpose.md:3: pheromone.{key} {rule}, got {SHOWN.get(value, value)}"


@pytest.mark.parametrize("value", ["docker", "'E2B'", "1", "null"])
def test_bad_sandbox(value: str) -> None:
    message = fails(front(f"sandbox: {value}\n"))
    assert message.startswith("purpose.md:2: 'sandbox' must be one of auto, local, e2b, none")


# ---------------------------------------------------------------- body


@pytest.mark.parametrize(
    "text",
    ["", "   \n\t\n", front("name: x\n", ""), front("name: x\n", "\n#\n##   \n---\n"), "# \n"],
)
def test_empty_purpose(text: str) -> None:
    assert "empty purpose" in fails(text)


def test_tasks_section_without_items() -> None:
    message = fails("# Title\n\nText.\n\n## Tasks\n\nWe will decide later.\n\n## Notes\n- x\n")
    assert message == (
        "purpose.md:5: '## Tasks' section has no list items (write '- Title: detail')"
    )


def test_second_tasks_section() -> None:
    message = fails("# T\n## Tasks\n- A\n## Tasks\n- B\n")
    assert message == "purpose.md:4: a second '## Tasks' section (the first is at line 2)"


def test_duplicate_task_titles_ignore_case() -> None:
    message = fails("# T\n## Tasks\n- Robin: song\n- Wren\n- robin: nest\n")
    assert message == "purpose.md:5: duplicate task title 'robin' (first at line 3)"


def test_task_without_title() -> None:
    assert fails("# T\n## Tasks\n- : only detail\n").startswith("purpose.md:3: task has no title")


def test_task_title_too_long() -> None:
    message = fails(f"# T\n## Tasks\n- {'x' * 121}: detail\n")
    assert message == "purpose.md:3: task title is 121 characters, at most 120 allowed"


def test_too_many_tasks_for_max_children() -> None:
    items = "".join(f"- Task {i}\n" for i in range(3))
    message = fails(front("budgets:\n  max_children: 2\n", f"# X\n## Tasks\n{items}"))
    assert message == "purpose.md:6: 3 tasks under '## Tasks' but budgets.max_children is 2"


def test_tasks_need_depth() -> None:
    message = fails(front("budgets:\n  max_depth: 0\n", "# X\n## Tasks\n- A\n"))
    assert "budgets.max_depth >= 1" in message


def test_tasks_need_task_budget() -> None:
    message = fails(front("budgets:\n  max_tasks: 2\n", "# X\n## Tasks\n- A\n- B\n"))
    assert "exceed budgets.max_tasks (2)" in message


def test_bad_tags() -> None:
    assert "lists no tags" in fails("# T\n## Tasks\n- A [tags: , ]\n")
    assert "5 tags, at most 4" in fails("# T\n## Tasks\n- A [tags: a, b, c, d, e]\n")
    assert "longer than 32" in fails(f"# T\n## Tasks\n- A [tags: {'t' * 33}]\n")


def test_duplicate_tags_are_merged() -> None:
    assert parse_purpose("# T\n## Tasks\n- A [TAGS: web, web]\n").tasks[0].tags == ("web",)


# ---------------------------------------------------------------- shipped bad examples


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("unknown-key.md", ":4: unknown budgets key 'max_task' (did you mean 'max_tasks'?)"),
        ("unclosed-front-matter.md", ":1: front matter opened with '---' but never closed"),
        ("bad-yaml.md", ":4: front matter is not valid YAML"),
        ("wrong-type.md", ":3: budgets.max_depth must be a whole number, got a string '2'"),
        ("too-many-tasks.md", ":7: 3 tasks under '## Tasks' but budgets.max_children is 2"),
        ("empty.md", ": empty purpose"),
    ],
)
def test_bad_examples(name: str, expected: str) -> None:
    path = EXAMPLES / "bad" / name
    with pytest.raises(PurposeError) as info:
        load_purpose(path)
    assert str(info.value).startswith(f"{path}{expected}")
