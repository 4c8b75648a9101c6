"""Git plumbing against real local repositories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from provisioner.core.errors import GitError
from provisioner.software import gitops, proc
from tests.support.gitrepos import Repo


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    r = Repo(tmp_path / "origin")
    r.commit({"a.txt": "1\n"}, "one")
    return r


def test_resolve_ref_tags_branches_commits_and_default(repo: Repo) -> None:
    first = repo.git("rev-parse", "HEAD")
    repo.tag("v1")  # annotated: must resolve to the commit, not the tag object
    repo.tag("light", annotated=False)
    second = repo.commit({"a.txt": "2\n"}, "two")
    repo.branch("dev")
    third = repo.commit({"a.txt": "3\n"}, "three")
    assert gitops.resolve_ref(repo.url, "v1") == first
    assert gitops.resolve_ref(repo.url, "light") == first
    assert gitops.resolve_ref(repo.url, "dev") == second
    assert gitops.resolve_ref(repo.url, "main") == third
    assert gitops.resolve_ref(repo.url, None) == third
    assert gitops.resolve_ref(repo.url, "f" * 40) == "f" * 40
    with pytest.raises(GitError) as info:
        gitops.resolve_ref(repo.url, "v9")
    assert "'v9' not found" in info.value.message and info.value.where == repo.url


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/x.git",
        "ext::sh -c touch% /tmp/pwned",
        "/local/path",
        "-uhttps://x",
        "ftp://host/repo",
        "https://host/repo with space",
    ],
)
def test_unsafe_urls_are_rejected(url: str) -> None:
    with pytest.raises(GitError):
        gitops.check_url(url)


@pytest.mark.parametrize(
    "url",
    ["https://github.com/o/r.git", "ssh://git@host/o/r", "git@github.com:o/r.git", "file:///x"],
)
def test_safe_urls_are_accepted(url: str) -> None:
    gitops.check_url(url)


def test_https_remote_cannot_use_file_transport(repo: Repo, tmp_path: Path) -> None:
    # GIT_ALLOW_PROTOCOL excludes file unless the URL itself is file://
    env = gitops.git_env("https://example.invalid/x")
    assert "file" not in env["GIT_ALLOW_PROTOCOL"].split(":")
    result = proc.run(["git", "clone", repo.url, str(tmp_path / "c")], env=env)
    assert not result.ok and "transport 'file' not allowed" in result.output


def test_read_head_from_files_loose_packed_and_detached(repo: Repo) -> None:
    head = repo.git("rev-parse", "HEAD")
    assert gitops.read_head(repo.path) == head
    repo.git("pack-refs", "--all")
    assert not (repo.path / ".git/refs/heads/main").exists()
    assert gitops.read_head(repo.path) == head
    repo.git("checkout", "--quiet", "--detach", head)
    assert gitops.read_head(repo.path) == head
    assert gitops.read_head(repo.path.parent) is None


def test_read_head_through_a_packed_refs_file_over_a_megabyte(repo: Repo) -> None:
    head = repo.git("rev-parse", "HEAD")
    repo.git("pack-refs", "--all")
    packed = repo.path / ".git" / "packed-refs"
    tags = "".join(f"{head} refs/tags/t{i:06d}\n" for i in range(30_000))  # ~1.8 MB
    packed.write_text(packed.read_text() + tags)
    assert packed.stat().st_size > gitops.MAX_GIT_FILE_BYTES
    assert gitops.read_head(repo.path) == head


def test_materialize_clones_via_staging_and_moves_between_refs(repo: Repo, tmp_path: Path) -> None:
    first = repo.git("rev-parse", "HEAD")
    repo.tag("v1")
    second = repo.commit({"b.txt": "b\n"}, "two")
    dest, staging = tmp_path / "nodes" / "thing", tmp_path / "staging"
    co = gitops.materialize(repo.url, "v1", dest, staging, what="node thing")
    assert (co.commit, co.kind, co.fresh, co.unpinned) == (first, "tag", True, False)
    assert gitops.origin_url(dest) == repo.url
    assert list(staging.iterdir()) == []
    co = gitops.materialize(repo.url, "main", dest, staging, what="node thing")
    assert (co.commit, co.kind, co.changed, co.unpinned) == (second, "branch", True, True)
    with proc.recording() as calls:
        co = gitops.materialize(repo.url, first, dest, staging, what="node thing")
    assert co.commit == first and gitops.read_head(dest) == first
    assert not any(c[1:] and "fetch" in c for c in calls)  # commit known locally: no fetch


def test_new_commits_are_fetched(repo: Repo, tmp_path: Path) -> None:
    dest, staging = tmp_path / "thing", tmp_path / "staging"
    gitops.materialize(repo.url, "main", dest, staging, what="x")
    newer = repo.commit({"c.txt": "c\n"}, "three")
    co = gitops.materialize(repo.url, newer, dest, staging, what="x")
    assert co.commit == newer and (dest / "c.txt").exists()


def test_existing_non_repo_directory_is_refused(repo: Repo, tmp_path: Path) -> None:
    dest = tmp_path / "thing"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(GitError) as info:
        gitops.materialize(repo.url, "main", dest, tmp_path / "s", what="node thing")
    assert "not a git checkout" in info.value.message
    assert (dest / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://github.com/ltdrdata/ComfyUI-Manager.git", "ComfyUI-Manager"),
        ("https://github.com/rgthree/rgthree-comfy/", "rgthree-comfy"),
        ("git@github.com:kijai/ComfyUI-KJNodes.git", "ComfyUI-KJNodes"),
        ("file:///srv/mirrors/was-node-suite", "was-node-suite"),
    ],
)
def test_node_name_from_url(url: str, name: str) -> None:
    assert gitops.node_name(url) == name


def test_submodules_are_checked_out(repo: Repo, tmp_path: Path) -> None:
    lib = Repo(tmp_path / "lib")
    lib.commit({"lib.py": "VALUE = 42\n"}, "lib")
    repo.git("-c", "protocol.file.allow=always", "submodule", "add", "--quiet", lib.url, "vendor")
    repo.commit({}, "add submodule")
    dest = tmp_path / "nodes" / "with-sub"
    gitops.materialize(repo.url, "main", dest, tmp_path / "staging", what="node with-sub")
    assert (dest / "vendor" / "lib.py").read_text() == "VALUE = 42\n"


def test_submodule_on_a_blocked_transport_fails(repo: Repo, tmp_path: Path) -> None:
    lib = Repo(tmp_path / "lib2")
    lib.commit({"x.py": "\n"}, "lib")
    repo.git("-c", "protocol.file.allow=always", "submodule", "add", "--quiet", lib.url, "vendor")
    repo.git("config", "-f", ".gitmodules", "submodule.vendor.url", "ext::sh -c false")
    repo.commit({}, "submodule over ext::")
    dest = tmp_path / "nodes" / "evil"
    with pytest.raises(GitError) as info:
        gitops.materialize(repo.url, "main", dest, tmp_path / "staging", what="node evil")
    assert "submodule" in info.value.message and "'ext' not allowed" in info.value.message
    assert not dest.exists()


def _break(repo: Repo, name: str, content: bytes) -> None:
    target = repo.path / ".git" / name
    if name == "packed-refs":
        repo.git("pack-refs", "--all")
        (repo.path / ".git/refs/heads/main").unlink(missing_ok=True)
    target.unlink(missing_ok=True)
    if content == b"FIFO":
        os.mkfifo(target)
    else:
        target.write_bytes(content)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("HEAD", b"ref: refs/heads/\xff\n"),
        ("HEAD", b"ref: refs/heads/ma\x00in\n"),
        ("HEAD", b"\xfe\xff"),
        ("HEAD", b"FIFO"),  # reading it must not block
        ("HEAD", b"ref: ../../../../../../etc/hostname\n"),  # outside refs/: not followed
        ("packed-refs", b"\xff\x00 refs/heads/main\n"),
        ("commondir", b"..\x00/elsewhere\n"),
        ("commondir", b"\xff\n"),
    ],
)
def test_broken_git_metadata_means_unknown(repo: Repo, name: str, content: bytes) -> None:
    _break(repo, name, content)
    assert gitops.read_head(repo.path) is None


@pytest.mark.parametrize("content", [b'[remote "origin"]\n  url = \xff\n', b"\x00", b"FIFO"])
def test_broken_git_config_means_no_origin(repo: Repo, content: bytes) -> None:
    _break(repo, "config", content)
    assert gitops.origin_url(repo.path) is None


@pytest.mark.parametrize(
    "content", [b"gitdir: \xff\n", b"gitdir: /tmp/x\x00y\n", b"gitdir:\n", b"gitdir: loop\n"]
)
def test_broken_gitdir_file_means_no_repository(tmp_path: Path, content: bytes) -> None:
    (tmp_path / ".git").write_bytes(content)
    (tmp_path / "loop").symlink_to("loop")
    assert gitops.read_head(tmp_path) is None and gitops.origin_url(tmp_path) is None


def test_gitdir_file_of_a_worktree_is_followed(repo: Repo, tmp_path: Path) -> None:
    repo.git("worktree", "add", "--quiet", "--detach", str(tmp_path / "wt"))
    assert gitops.read_head(tmp_path / "wt") == repo.git("rev-parse", "HEAD")
    repo.git("worktree", "add", "--quiet", "-b", "side", str(tmp_path / "wt2"))
    repo.git("pack-refs", "--all")  # the branch is found through commondir + packed-refs
    assert gitops.read_head(tmp_path / "wt2") == repo.git("rev-parse", "HEAD")


def test_a_trailing_newline_is_not_a_commit_or_a_url() -> None:
    assert gitops.HEX40.match("a" * 40)
    assert not gitops.HEX40.match("a" * 40 + "\n")
    with pytest.raises(GitError):
        gitops.check_url("https://github.com/o/r\n")


def test_a_commit_with_a_trailing_newline_is_resolved_as_a_ref(repo: Repo) -> None:
    with pytest.raises(GitError, match="not found"):
        gitops.resolve_ref(repo.url, "f" * 40 + "\n")
