"""Test-host shim: lets PyPI's CUDA-linked torchvision import beside the CPU torch build.

torchvision registers fake kernels for `torchvision::nms` and `torchvision::qnms` at import,
which fails when its C extension could not load. Defining the two schemas first (lazily, only
when torchvision is imported) makes the import succeed; the ops themselves are never called by
ComfyUI. Installed by scripts/setup-host.sh into the host venv only.
"""
import importlib.abc
import sys

_library = None


class _DefineTorchvisionSchemas(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        global _library
        if name == "torchvision":
            sys.meta_path.remove(self)
            import torch

            _library = torch.library.Library("torchvision", "DEF")
            _library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            _library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        return None


sys.meta_path.insert(0, _DefineTorchvisionSchemas())
