"""Builds shufflenet_fused._C against the torch that is installed.

CPU kernels are always built. CUDA kernels are built too when torch is a CUDA
build and nvcc is found (no GPU is needed to compile). Environment:

  SHUFFLENET_FUSED_CUDA=0|1       force the CUDA kernels off / on (default: auto)
  SHUFFLENET_FUSED_TEST_OPS=0|1   also build the test-only ops (csrc/**/*_test_ops.cpp:
                                  the index-math checks, the CPU emulator of the tiled
                                  CUDA pipeline and the host runner of the CUDA kernels);
                                  scripts/setup_env.sh turns it on
  SHUFFLENET_FUSED_SANITIZE=1     the CPU extension at -O1 under AddressSanitizer + UBSan,
                                  masked AVX-512 accesses checked (scripts/sanitize_cpu.sh)
  TORCH_CUDA_ARCH_LIST        CUDA archs (default here: "8.0;9.0+PTX")
  MAX_JOBS                    parallel compile jobs (torch's own variable)
"""

import glob
import os
import shutil

from setuptools import find_packages, setup

# torch guesses CUDA_HOME from the nvcc on PATH; with nvcc in /usr/local/bin it
# picks /usr/local and then fails to link -lcudart. Prefer the real toolkit
# folder before torch.utils.cpp_extension reads the variable at import time.
if not os.environ.get("CUDA_HOME") and not os.environ.get("CUDA_PATH"):
    if os.path.isfile("/usr/local/cuda/bin/nvcc"):
        os.environ["CUDA_HOME"] = "/usr/local/cuda"

try:
    import torch
except ImportError:
    # pyproject.toml does not list torch as a build requirement: pip's default isolated
    # build would fetch some other torch (several GB) and compile against it, and the
    # extension would not load with the torch the user runs.
    raise SystemExit(
        "shufflenet_fused is compiled against the torch it will run with, and none is importable "
        "here (an isolated build?). Install torch first, then build without isolation:\n"
        "    pip install --no-build-isolation ."
    ) from None
from torch.utils.cpp_extension import (  # noqa: E402
    CUDA_HOME,
    BuildExtension,
    CppExtension,
    CUDAExtension,
)

HERE = os.path.dirname(os.path.abspath(__file__))


def _want_cuda() -> bool:
    flag = os.environ.get("SHUFFLENET_FUSED_CUDA", "auto").strip().lower()
    available = torch.version.cuda is not None and CUDA_HOME is not None and (
        os.path.isfile(os.path.join(CUDA_HOME, "bin", "nvcc")) or shutil.which("nvcc") is not None
    )
    if flag in ("0", "off", "false", "no"):
        return False
    if flag in ("1", "on", "true", "yes"):
        if not available:
            raise RuntimeError(
                "SHUFFLENET_FUSED_CUDA=1 but CUDA cannot be built: "
                f"torch.version.cuda={torch.version.cuda!r}, CUDA_HOME={CUDA_HOME!r}"
            )
        return True
    return available


def _flag(name: str) -> bool:
    return os.environ.get(name, "0").strip().lower() in ("1", "on", "true", "yes")


def _sources(*patterns: str) -> list[str]:
    found = sorted({p for pattern in patterns for p in glob.glob(pattern, root_dir=HERE, recursive=True)})
    if not _flag("SHUFFLENET_FUSED_TEST_OPS"):
        found = [p for p in found if not p.endswith("_test_ops.cpp")]
    return found


def _extension():
    # csrc/cuda/*.cu and *.cpp are the only sources that need nvcc and the CUDA headers.
    # csrc/cuda/host holds host C++ (the CUDA kernels run on host threads, test-only).
    cpp_sources = _sources(
        "csrc/*.cpp", "csrc/python/*.cpp", "csrc/common/**/*.cpp", "csrc/meta/*.cpp", "csrc/cpu/**/*.cpp",
        "csrc/tiled/**/*.cpp", "csrc/cuda/host/*.cpp",
    )
    # -fno-tree-loop-distribute-patterns: keep short row copies as inline vector
    # loops instead of memcpy calls (csrc/cpu/flat_plane.h).
    # -fopenmp: at::parallel_for is a header template that runs serially unless
    # the extension itself is compiled with OpenMP (it then shares torch's libgomp).
    # -fno-math-errno: nothing here reads errno, and with it set std::sqrt cannot
    # be vectorised (the per-channel BatchNorm folds).
    cxx_flags = [
        "-O3", "-fopenmp", "-fno-tree-loop-distribute-patterns", "-fno-math-errno", "-Wall", "-Wno-unknown-pragmas",
    ]  # fmt: skip
    include_dirs = [os.path.join(HERE, "csrc")]
    link_flags = ["-fopenmp"]
    if _flag("SHUFFLENET_FUSED_SANITIZE"):
        # vptr is off: torch's own libraries are not built with UBSan's type info.
        sanitize = ["-fsanitize=address,undefined", "-fno-sanitize=vptr", "-fno-sanitize-recover=all"]
        cxx_flags = [f for f in cxx_flags if f != "-O3"] + ["-O1", "-g", "-fno-omit-frame-pointer"] + sanitize
        cxx_flags.append("-DSF_CHECK_MASKED_ACCESS")
        link_flags += sanitize
        if _want_cuda():
            raise RuntimeError("SHUFFLENET_FUSED_SANITIZE=1 builds the CPU extension only: set SHUFFLENET_FUSED_CUDA=0")
    if _want_cuda():
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0+PTX")
        cuda_sources = _sources("csrc/cuda/*.cu", "csrc/cuda/*.cpp")
        return CUDAExtension(
            "shufflenet_fused._C",
            cpp_sources + cuda_sources,
            include_dirs=include_dirs,
            extra_compile_args={
                "cxx": cxx_flags,
                "nvcc": ["-O3", "-lineinfo", "--expt-relaxed-constexpr", "-Xptxas=-warn-spills"],
            },
            extra_link_args=link_flags,
        )
    return CppExtension(
        "shufflenet_fused._C",
        cpp_sources,
        include_dirs=include_dirs,
        extra_compile_args={"cxx": cxx_flags},
        extra_link_args=link_flags,
    )


def _write_build_info() -> None:
    # Read at import (shufflenet_fused/ops/_library.py) to name both versions when the
    # torch installed differs from the one this build compiled against.
    path = os.path.join(HERE, "shufflenet_fused", "_build_info.py")
    text = (
        '"""Written by setup.py: what this build of _C was compiled against."""\n\n'
        f"TORCH_VERSION = {torch.__version__!r}\n"
    )
    old = open(path).read() if os.path.exists(path) else None
    if old != text:
        with open(path, "w") as f:
            f.write(text)


_write_build_info()

setup(
    packages=find_packages(include=["shufflenet_fused", "shufflenet_fused.*"]),
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension},
)
