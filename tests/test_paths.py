"""sae.paths: a command writes and deletes only inside what it owns, never through a link, and a
name that becomes a folder is one plain name."""

import pytest

from sae import paths


def test_owned__a_path_inside_a_real_folder_passes_whether_or_not_it_exists(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f.txt").write_text("x")
    assert paths.owned(tmp_path, "a", "f.txt") == tmp_path / "a" / "f.txt"
    assert paths.owned(tmp_path, "new/deeper/g.txt") == tmp_path / "new" / "deeper" / "g.txt"
    assert paths.owned(tmp_path / "not-yet") == tmp_path / "not-yet"


@pytest.mark.parametrize("link", ["", "a", "a/b", "a/b/f.txt"])
def test_owned__refuses_a_link_anywhere_from_the_root_to_the_target(tmp_path, link):
    """Pins the rule of issue 23: a link planted in a command's folder (or as the folder) sent
    its writes and deletes into the link's target."""
    root = tmp_path / "root"
    (root / "a" / "b").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    planted = root / link if link else root
    if planted.is_dir():
        planted.rename(tmp_path / "moved")
    planted.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(paths.PathError, match=rf"^{planted} is a symbolic link: ") as err:
        paths.owned(root, "a/b/f.txt")
    assert "\n" not in str(err.value)


def test_owned__a_dangling_link_is_refused_too(tmp_path):
    (tmp_path / "f.txt").symlink_to(tmp_path / "nowhere")
    with pytest.raises(paths.PathError, match="is a symbolic link"):
        paths.owned(tmp_path, "f.txt")


@pytest.mark.parametrize("parts", [("..", "x"), ("a/../../x",), ("/etc/passwd",)])
def test_owned__refuses_a_path_that_leaves_the_root(tmp_path, parts):
    with pytest.raises(paths.PathError, match="is not inside"):
        paths.owned(tmp_path, *parts)


@pytest.mark.parametrize("name", ["sae-sweep", "a.b", "β_2", "x" * 100])
def test_check_plain_name__a_plain_name_passes(name):
    assert paths.check_plain_name(name, "experiment name") == name


@pytest.mark.parametrize(
    "name", ["../../somewhere", "..", ".", "", ".hidden", "a/b", "a\\b", "/abs", "a\nb", "a b"]
)
def test_check_plain_name__a_path_or_hidden_name_is_one_line(name):
    with pytest.raises(ValueError, match=r"^experiment name .* is not a plain folder name") as e:
        paths.check_plain_name(name, "experiment name")
    assert "\n" not in str(e.value)
