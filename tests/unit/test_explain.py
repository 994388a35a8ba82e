from __future__ import annotations

from imgbuild.explain import diff_inputs

OLD = {"scheme": 1, "dockerfile": {"path": "a/Dockerfile", "digest": "sha256:1"}, "stage": None,
       "files": {"app.py": [0o100644, "d1"], "run.sh": [0o100644, "d2"], "gone.txt": [0o100644, "d3"]},
       "ignore_rules": "", "build_args": {"PORT": "80"}, "deps": {"BASE": "sha256:b1"},
       "secrets": {"npm": "sha256:s1"}, "labels": {}, "platforms": [], "bases": ["busybox:1.36"], "extra": {}}


def test_each_kind_of_difference_is_named() -> None:
    new = {**OLD, "files": {"app.py": [0o100644, "d9"], "run.sh": [0o100755, "d2"], "new.txt": [0o100644, "d4"]},
           "build_args": {"PORT": "8080"}, "deps": {"BASE": "sha256:b2"}, "secrets": {"npm": "sha256:s2"},
           "dockerfile": {"path": "a/Dockerfile", "digest": "sha256:2"}}
    assert diff_inputs(OLD, new, dep_labels={"BASE": "//base:base"}) == [
        "Dockerfile a/Dockerfile changed",
        "file changed (content): app.py",
        "file removed: gone.txt",
        "file added: new.txt",
        "file changed (mode): run.sh",
        "build arg PORT: '80' -> '8080'",
        "dependency //base:base changed",
        "secret npm changed",  # never the value, nor its hash
    ]


def test_identical_inputs_have_no_differences() -> None:
    assert diff_inputs(OLD, dict(OLD)) == []
