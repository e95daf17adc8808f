import hashlib
import json
import zipfile

import pytest

from workflow import pretrained
from workflow.lib.cli import UserError


def file_url(path):
    return path.resolve().as_uri()


@pytest.fixture
def release(tmp_path):
    source = tmp_path / "release"
    source.mkdir()
    (source / "ssd_resnet50_512-symbol.json").write_text("{}")
    (source / "ssd_resnet50_512-0000.params").write_bytes(b"weights-0")
    (source / "ssd_resnet50_512-0240.params").write_bytes(b"weights-240")
    return source


def test_download_is_verified_cached_and_unzipped(tmp_path, release):
    archive = tmp_path / "resnet50_ssd_512_voc0712_trainval.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in sorted(release.iterdir()):
            bundle.write(path, f"model/{path.name}")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    spec = {"url": file_url(archive), "sha256": digest}
    found = pretrained.resolve(spec, tmp_path / "cache")
    assert found.name == "ssd_resnet50_512-0240.params" and found.read_bytes() == b"weights-240"
    archive.unlink()  # the second resolve must not need the source any more
    assert pretrained.resolve(spec, tmp_path / "cache") == found


def test_wrong_checksum_discards_the_file(tmp_path, release):
    spec = {"url": file_url(release / "ssd_resnet50_512-0000.params"), "sha256": "0" * 64}
    with pytest.raises(UserError, match="expected 0000"):
        pretrained.resolve(spec, tmp_path / "cache")
    assert not list((tmp_path / "cache").rglob("*.params*"))


def test_partial_download_is_never_used(tmp_path, release):
    data = (release / "ssd_resnet50_512-0000.params").read_bytes()
    spec = {"url": file_url(release / "ssd_resnet50_512-0000.params"), "sha256": hashlib.sha256(data).hexdigest()}
    partial = tmp_path / "cache" / spec["sha256"] / "ssd_resnet50_512-0000.params.part"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(data[:3])
    assert pretrained.resolve(spec, tmp_path / "cache").read_bytes() == data


def test_offline_error_says_where_to_put_the_file(tmp_path):
    spec = {"url": file_url(tmp_path / "missing.zip"), "sha256": "a" * 64}
    with pytest.raises(UserError, match=f"put it at {tmp_path / 'cache' / ('a' * 64) / 'missing.zip'}"):
        pretrained.resolve(spec, tmp_path / "cache")


def test_local_prefix_and_params_file(tmp_path, release):
    assert pretrained.resolve(str(release / "ssd_resnet50_512"), tmp_path).name == "ssd_resnet50_512-0240.params"
    assert pretrained.resolve(str(release / "ssd_resnet50_512-0000.params"), tmp_path).read_bytes() == b"weights-0"
    with pytest.raises(UserError, match="no checkpoint at"):
        pretrained.resolve(str(release / "nothing"), tmp_path)


def test_cli_links_the_resolved_file(tmp_path, release):
    link = tmp_path / "run" / "pretrained.params"
    pretrained.main(
        ["--spec", json.dumps(str(release / "ssd_resnet50_512")), "--cache", str(tmp_path / "c"), "--out", str(link)]
    )
    assert link.is_symlink() and link.read_bytes() == b"weights-240"
