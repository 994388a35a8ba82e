"""The spec formats: imgbuild.yaml (the workspace) and BUILD.yaml (packages), parsed into the model."""
