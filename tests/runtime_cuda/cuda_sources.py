"""Hand-written CUDA kernels and module metadata shared by the CUDA runtime tests."""

N = 1000  # not a multiple of the block size: the bounds check matters

# Two kernels sharing a workspace: T = A + B, then C = 2 * T (also exercises `static inline`
# helpers, which -default-device makes device functions).
ADD_SCALE = f"""
static inline float twice(float x) {{ return 2.0f * x; }}

extern "C" __global__ void add_kernel(const float* __restrict__ a,
                                      const float* __restrict__ b, float* t) {{
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < {N}) t[i] = a[i] + b[i];
}}

extern "C" __global__ void scale_kernel(const float* __restrict__ t, float* c) {{
  __shared__ float tile[128];
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  tile[threadIdx.x] = i < {N} ? t[i] : 0.0f;
  __syncthreads();
  if (i < {N}) c[i] = twice(tile[threadIdx.x]);
}}
"""

GRID = [(N + 127) // 128, 1, 1]


def add_scale_meta(arch: str = "sm_90") -> dict:
    return {"version": 1, "name": "add_scale", "target": f"cuda -arch={arch}",
            "params": [{"name": "A", "shape": [N], "dtype": "float32", "written": False},
                       {"name": "B", "shape": [N], "dtype": "float32", "written": False},
                       {"name": "C", "shape": [N], "dtype": "float32", "written": True}],
            "workspace": [{"name": "T", "nbytes": 4 * N}],
            "kernels": [{"name": "add_kernel", "grid": GRID, "block": [128, 1, 1],
                         "shared_bytes": 0,
                         "args": [["param", 0], ["param", 1], ["workspace", 0]]},
                        {"name": "scale_kernel", "grid": GRID, "block": [128, 1, 1],
                         "shared_bytes": 0, "args": [["workspace", 0], ["param", 2]]}]}


# One kernel with a scalar argument and dynamic shared memory.
AXPY = """
extern "C" __global__ void axpy(const float* x, float* y, float alpha, int n) {
  extern __shared__ float buf[];
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  buf[threadIdx.x] = i < n ? x[i] : 0.0f;
  __syncthreads();
  if (i < n) y[i] += alpha * buf[threadIdx.x];
}
"""

# Writes far outside any allocation: an illegal address, a sticky error.
OUT_OF_BOUNDS = """
extern "C" __global__ void boom_kernel(float* a) {
  a[threadIdx.x + (1ull << 40)] = 1.0f;
}
"""


def boom_meta() -> dict:
    return {"version": 1, "name": "boom", "target": "cuda",
            "params": [{"name": "A", "shape": [4], "dtype": "float32", "written": True}],
            "workspace": [],
            "kernels": [{"name": "boom_kernel", "grid": [1, 1, 1], "block": [32, 1, 1],
                         "shared_bytes": 0, "args": [["param", 0]]}]}
