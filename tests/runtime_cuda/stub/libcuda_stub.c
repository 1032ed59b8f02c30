/* A stand-in for the NVIDIA driver library (libcuda.so.1) for tests on machines without a GPU.

   The real cuda-bindings package loads it (it is found through LD_LIBRARY_PATH) and asks it for
   every entry point through cuGetProcAddress, so kiln's runtime runs unchanged: the bindings'
   own argument marshalling, return tuples and enums are the real ones. Device memory is host
   memory (malloc), so a test can look at it. Kernels do not run here: each launch (direct or
   replayed from a captured graph) calls a hook that the test process installs
   (kiln_stub_set_hooks) with the kernel's name, its module's cubin and the launch; the hook
   emulates the kernel and returns a CUresult (700 poisons the context, as an illegal address
   does on a GPU). A second hook says how many 8-byte parameters a kernel takes, so that a
   captured launch can copy them as the driver does.

   What the real driver checks and this stub checks too: cuInit first, a current context per
   thread, launch shapes against the device limits, dynamic shared memory against the
   function's opt-in limit, the cubin's ELF machine and SM arch against the device, kernel
   names against the cubin, copies and memsets inside one allocation, stream-capture rules
   (no synchronous calls, no legacy-stream work and no allocations on a capturing thread; an
   invalidated capture fails at cuStreamEndCapture), and sticky errors. */

#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int CUresult;
typedef unsigned long long CUdeviceptr;

enum {
  OK = 0, INVALID_VALUE = 1, OUT_OF_MEMORY = 2, NOT_INITIALIZED = 3, NO_DEVICE = 100,
  INVALID_DEVICE = 101, INVALID_IMAGE = 200, INVALID_CONTEXT = 201, NO_BINARY_FOR_GPU = 209,
  INVALID_HANDLE = 400, ILLEGAL_STATE = 401, NOT_FOUND = 500, ILLEGAL_ADDRESS = 700,
  LAUNCH_OUT_OF_RESOURCES = 701, LAUNCH_FAILED = 719, CAPTURE_UNSUPPORTED = 900,
  CAPTURE_INVALIDATED = 901, CAPTURE_IMPLICIT = 906, CAPTURE_WRONG_THREAD = 908
};

#define MAGIC_MODULE 0x6d6f64u
#define MAGIC_FUNC 0x66756eu
#define MAGIC_STREAM 0x737472u
#define MAGIC_GRAPH 0x677261u
#define MAGIC_EXEC 0x657865u
#define MAGIC_EVENT 0x657665u
#define MAX_PARAMS 128
#define LEGACY_STREAM(s) ((uintptr_t)(s) <= 2)  /* NULL, CU_STREAM_LEGACY, CU_STREAM_PER_THREAD */

typedef int (*launch_hook)(const char *name, const unsigned char *image, size_t image_size,
                           const unsigned *dims, unsigned shared, void **params);
typedef int (*nparams_hook)(const char *name, const unsigned char *image, size_t image_size);

typedef struct { unsigned magic; unsigned char *image; size_t size; } Module;
typedef struct { unsigned magic; Module *mod; char name[512]; int max_dynamic_shared; } Func;
typedef struct {
  int kind;  /* 0 launch, 1 memset, 2 copy */
  Func *fn; unsigned dims[6]; unsigned shared; int nparams; uint64_t params[MAX_PARAMS];
  CUdeviceptr dst, src; size_t n; unsigned char value;
} Op;
typedef struct { unsigned magic; Op *ops; int n, cap; } Graph;
typedef struct {
  unsigned magic; int capturing, invalid, mode; pthread_t owner; Graph *graph;
} Stream;
typedef struct { unsigned magic; unsigned flags; int recorded; double t; } Event;
typedef struct { CUdeviceptr base; size_t size; } Alloc;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int initialised, poisoned;
static int attrs[256];
static int ctx_object;
static __thread void *current_ctx;
static __thread int thread_captures;  /* captures begun by this thread, not yet ended */
static Alloc *allocs;
static int nallocs, cap_allocs;
static size_t used_bytes, total_bytes = (size_t)8 << 30;
static launch_hook on_launch;
static nparams_hook on_nparams;
static unsigned long long launches;
static unsigned long long overlapped;  /* launches with programmatic stream serialization */

/* ------------------------------------------------------------------ hooks for the tests */

void kiln_stub_set_hooks(launch_hook launch, nparams_hook nparams) {
  on_launch = launch;
  on_nparams = nparams;
}
void kiln_stub_set_attribute(int attr, int value) { if (attr >= 0 && attr < 256) attrs[attr] = value; }
void kiln_stub_set_total_memory(unsigned long long bytes) { total_bytes = (size_t)bytes; }
unsigned long long kiln_stub_launch_count(void) { return launches; }
unsigned long long kiln_stub_overlapped_count(void) { return overlapped; }
unsigned long long kiln_stub_used_bytes(void) { return used_bytes; }
int kiln_stub_live_allocations(void) { return nallocs; }

/* The allocation holding [ptr, ptr + n): its size left from ptr, or 0 when none holds it. */
unsigned long long kiln_stub_extent(CUdeviceptr ptr) {
  unsigned long long left = 0;
  pthread_mutex_lock(&mu);
  for (int i = 0; i < nallocs; i++)
    if (ptr >= allocs[i].base && ptr < allocs[i].base + allocs[i].size) {
      left = allocs[i].base + allocs[i].size - ptr;
      break;
    }
  pthread_mutex_unlock(&mu);
  return left;
}

/* ------------------------------------------------------------------ helpers */

static void default_attributes(void) {
  static const int table[][2] = {
      {1, 1024}, {2, 1024}, {3, 1024}, {4, 64}, {5, 2147483647}, {6, 65535}, {7, 65535},
      {8, 49152}, {9, 65536}, {10, 32}, {12, 65536}, {13, 1980000}, {16, 132}, {31, 1},
      {36, 3201000}, {37, 6144}, {38, 62914560}, {39, 2048}, {41, 1}, {75, 9}, {76, 0},
      {81, 233472}, {82, 65536}, {97, 232448}, {106, 32}};
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) attrs[table[i][0]] = table[i][1];
}

static CUresult gate(void) {  /* every context-bound call starts here */
  if (!initialised) return NOT_INITIALIZED;
  if (poisoned) return poisoned;
  if (!current_ctx) return INVALID_CONTEXT;
  return OK;
}

static CUresult no_sync_while_capturing(void) {
  return thread_captures ? CAPTURE_UNSUPPORTED : OK;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int inside(CUdeviceptr p, size_t n) {
  return n == 0 || kiln_stub_extent(p) >= n;
}

static CUresult stream_ok(void *h) {
  if (LEGACY_STREAM(h)) return OK;
  return ((Stream *)h)->magic == MAGIC_STREAM ? OK : INVALID_HANDLE;
}

static Stream *capturing(void *h) {
  return (!LEGACY_STREAM(h) && ((Stream *)h)->capturing) ? (Stream *)h : NULL;
}

static void append(Graph *g, const Op *op) {
  if (g->n == g->cap) {
    g->cap = g->cap ? 2 * g->cap : 16;
    g->ops = realloc(g->ops, g->cap * sizeof(Op));
  }
  g->ops[g->n++] = *op;
}

/* Work enqueued on a stream: recorded when the stream captures, else run now. A legacy-stream
   enqueue while this thread captures would synchronise with the capture: invalid. */
static CUresult enqueue(void *stream, Op *op, int *captured) {
  Stream *s = capturing(stream);
  *captured = 0;
  if (s) {
    append(s->graph, op);
    *captured = 1;
    return OK;
  }
  if (LEGACY_STREAM(stream) && thread_captures) return CAPTURE_IMPLICIT;
  return OK;
}

static CUresult run_op(const Op *op) {
  if (op->kind == 1) { memset((void *)(uintptr_t)op->dst, op->value, op->n); return OK; }
  if (op->kind == 2) {
    memmove((void *)(uintptr_t)op->dst, (void *)(uintptr_t)op->src, op->n);
    return OK;
  }
  void *ptrs[MAX_PARAMS];
  for (int i = 0; i < op->nparams; i++) ptrs[i] = (void *)&op->params[i];
  launches++;
  if (!on_launch) return OK;
  CUresult r = on_launch(op->fn->name, op->fn->mod->image, op->fn->mod->size, op->dims,
                         op->shared, ptrs);
  if (r == ILLEGAL_ADDRESS || r == LAUNCH_FAILED) poisoned = r;
  return r;
}

/* ------------------------------------------------------------------ initialisation, device */

CUresult cuInit(unsigned flags) {
  if (flags) return INVALID_VALUE;
  if (!initialised) default_attributes();
  initialised = 1;
  return OK;
}
CUresult cuDriverGetVersion(int *v) { if (!v) return INVALID_VALUE; *v = 13000; return OK; }
CUresult cuDeviceGetCount(int *n) {
  if (!initialised) return NOT_INITIALIZED;
  *n = 1;
  return OK;
}
CUresult cuDeviceGet(int *dev, int ordinal) {
  if (!initialised) return NOT_INITIALIZED;
  if (ordinal != 0) return INVALID_DEVICE;
  *dev = 0;
  return OK;
}
CUresult cuDeviceGetName(char *name, int len, int dev) {
  if (!initialised) return NOT_INITIALIZED;
  if (dev != 0) return INVALID_DEVICE;
  if (!name || len <= 0) return INVALID_VALUE;
  snprintf(name, (size_t)len, "kiln stub GPU (no device)");
  return OK;
}
CUresult cuDeviceTotalMem_v2(size_t *bytes, int dev) {
  if (!initialised) return NOT_INITIALIZED;
  if (dev != 0) return INVALID_DEVICE;
  *bytes = total_bytes;
  return OK;
}
CUresult cuDeviceGetAttribute(int *value, int attr, int dev) {
  if (!initialised) return NOT_INITIALIZED;
  if (dev != 0) return INVALID_DEVICE;
  if (attr < 0 || attr >= 256) return INVALID_VALUE;
  *value = attrs[attr];
  return OK;
}
CUresult cuDevicePrimaryCtxRetain(void **ctx, int dev) {
  if (!initialised) return NOT_INITIALIZED;
  if (dev != 0) return INVALID_DEVICE;
  *ctx = &ctx_object;
  return OK;
}
CUresult cuCtxSetCurrent(void *ctx) {
  if (!initialised) return NOT_INITIALIZED;
  if (ctx && ctx != &ctx_object) return INVALID_CONTEXT;
  current_ctx = ctx;
  return OK;
}
CUresult cuCtxGetCurrent(void **ctx) { *ctx = current_ctx; return initialised ? OK : NOT_INITIALIZED; }
CUresult cuCtxSynchronize(void) {
  CUresult r = gate();
  return r ? r : no_sync_while_capturing();
}
CUresult cuCtxSynchronize_v2(void *ctx) { (void)ctx; return cuCtxSynchronize(); }

/* ------------------------------------------------------------------ errors */

static const char *error_name(int e) {
  switch (e) {
    case OK: return "CUDA_SUCCESS";
    case INVALID_VALUE: return "CUDA_ERROR_INVALID_VALUE";
    case OUT_OF_MEMORY: return "CUDA_ERROR_OUT_OF_MEMORY";
    case NOT_INITIALIZED: return "CUDA_ERROR_NOT_INITIALIZED";
    case NO_DEVICE: return "CUDA_ERROR_NO_DEVICE";
    case INVALID_DEVICE: return "CUDA_ERROR_INVALID_DEVICE";
    case INVALID_IMAGE: return "CUDA_ERROR_INVALID_IMAGE";
    case INVALID_CONTEXT: return "CUDA_ERROR_INVALID_CONTEXT";
    case NO_BINARY_FOR_GPU: return "CUDA_ERROR_NO_BINARY_FOR_GPU";
    case INVALID_HANDLE: return "CUDA_ERROR_INVALID_HANDLE";
    case ILLEGAL_STATE: return "CUDA_ERROR_ILLEGAL_STATE";
    case NOT_FOUND: return "CUDA_ERROR_NOT_FOUND";
    case ILLEGAL_ADDRESS: return "CUDA_ERROR_ILLEGAL_ADDRESS";
    case LAUNCH_OUT_OF_RESOURCES: return "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES";
    case LAUNCH_FAILED: return "CUDA_ERROR_LAUNCH_FAILED";
    case CAPTURE_UNSUPPORTED: return "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED";
    case CAPTURE_INVALIDATED: return "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED";
    case CAPTURE_IMPLICIT: return "CUDA_ERROR_STREAM_CAPTURE_IMPLICIT";
    case CAPTURE_WRONG_THREAD: return "CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD";
    default: return NULL;
  }
}
CUresult cuGetErrorName(int e, const char **s) {
  *s = error_name(e);
  return *s ? OK : INVALID_VALUE;
}
CUresult cuGetErrorString(int e, const char **s) {
  *s = error_name(e) ? "stub driver error" : NULL;
  if (e == OK) *s = "no error";
  if (e == ILLEGAL_ADDRESS) *s = "an illegal memory access was encountered";
  return *s ? OK : INVALID_VALUE;
}

/* ------------------------------------------------------------------ memory */

CUresult cuMemAlloc_v2(CUdeviceptr *ptr, size_t n) {
  CUresult r = gate();
  if (r) return r;
  if ((r = no_sync_while_capturing())) return r;
  if (!ptr || n == 0) return INVALID_VALUE;
  pthread_mutex_lock(&mu);
  if (n > total_bytes - used_bytes) { pthread_mutex_unlock(&mu); return OUT_OF_MEMORY; }
  size_t rounded = (n + 255) & ~(size_t)255;
  void *p = aligned_alloc(256, rounded);
  if (!p) { pthread_mutex_unlock(&mu); return OUT_OF_MEMORY; }
  memset(p, 0xff, rounded);  /* NaN bytes: reading memory nothing wrote shows */
  if (nallocs == cap_allocs) {
    cap_allocs = cap_allocs ? 2 * cap_allocs : 64;
    allocs = realloc(allocs, cap_allocs * sizeof(Alloc));
  }
  allocs[nallocs++] = (Alloc){(CUdeviceptr)(uintptr_t)p, n};
  used_bytes += n;
  pthread_mutex_unlock(&mu);
  *ptr = (CUdeviceptr)(uintptr_t)p;
  return OK;
}
CUresult cuMemFree_v2(CUdeviceptr ptr) {
  CUresult r = gate();
  if (r) return r;
  if ((r = no_sync_while_capturing())) return r;
  pthread_mutex_lock(&mu);
  for (int i = 0; i < nallocs; i++)
    if (allocs[i].base == ptr) {
      used_bytes -= allocs[i].size;
      free((void *)(uintptr_t)ptr);
      allocs[i] = allocs[--nallocs];
      pthread_mutex_unlock(&mu);
      return OK;
    }
  pthread_mutex_unlock(&mu);
  return INVALID_VALUE;
}
CUresult cuMemGetInfo_v2(size_t *free_bytes, size_t *total) {
  CUresult r = gate();
  if (r) return r;
  *free_bytes = total_bytes - used_bytes;
  *total = total_bytes;
  return OK;
}
CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t n) {
  CUresult r = gate();
  if (r || (r = no_sync_while_capturing())) return r;
  if (!inside(dst, n) || (!src && n)) return INVALID_VALUE;
  memcpy((void *)(uintptr_t)dst, src, n);
  return OK;
}
CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t n) {
  CUresult r = gate();
  if (r || (r = no_sync_while_capturing())) return r;
  if (!inside(src, n) || (!dst && n)) return INVALID_VALUE;
  memcpy(dst, (void *)(uintptr_t)src, n);
  return OK;
}
CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n) {
  CUresult r = gate();
  if (r || (r = no_sync_while_capturing())) return r;
  if (!inside(dst, n) || !inside(src, n)) return INVALID_VALUE;
  memmove((void *)(uintptr_t)dst, (void *)(uintptr_t)src, n);
  return OK;
}
CUresult cuMemsetD8_v2(CUdeviceptr dst, unsigned char value, size_t n) {
  CUresult r = gate();
  if (r || (r = no_sync_while_capturing())) return r;
  if (!inside(dst, n)) return INVALID_VALUE;
  memset((void *)(uintptr_t)dst, value, n);
  return OK;
}
static CUresult async_op(Op *op, void *stream) {
  CUresult r = gate();
  if (r || (r = stream_ok(stream))) return r;
  if (!inside(op->dst, op->n) || (op->kind == 2 && !inside(op->src, op->n))) return INVALID_VALUE;
  int captured;
  if ((r = enqueue(stream, op, &captured))) return r;
  return captured ? OK : run_op(op);
}
CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char value, size_t n, void *stream) {
  Op op = {.kind = 1, .dst = dst, .value = value, .n = n};
  return async_op(&op, stream);
}
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, void *stream) {
  Op op = {.kind = 2, .dst = dst, .src = src, .n = n};
  return async_op(&op, stream);
}

/* ------------------------------------------------------------------ modules and launches */

static size_t elf_size(const unsigned char *p) {
  uint64_t shoff, phoff;
  uint16_t shentsize, shnum, phentsize, phnum;
  memcpy(&phoff, p + 32, 8); memcpy(&shoff, p + 40, 8);
  memcpy(&phentsize, p + 54, 2); memcpy(&phnum, p + 56, 2);
  memcpy(&shentsize, p + 58, 2); memcpy(&shnum, p + 60, 2);
  size_t a = shoff + (size_t)shentsize * shnum, b = phoff + (size_t)phentsize * phnum;
  return a > b ? a : b;
}

CUresult cuModuleLoadData(Module **out, const void *image) {
  CUresult r = gate();
  if (r) return r;
  const unsigned char *p = image;
  if (!p || memcmp(p, "\x7f" "ELF", 4) != 0 || p[4] != 2) return INVALID_IMAGE;
  uint16_t machine;
  uint32_t flags;
  memcpy(&machine, p + 18, 2);
  memcpy(&flags, p + 48, 4);
  if (machine != 190) return INVALID_IMAGE;  /* EM_CUDA */
  int sm = p[8] >= 8 ? (int)((flags >> 8) & 0xff) : (int)(flags & 0xff);
  int dev = attrs[75] * 10 + attrs[76];
  if (sm / 10 != dev / 10 || sm > dev) return NO_BINARY_FOR_GPU;
  Module *m = calloc(1, sizeof *m);
  m->magic = MAGIC_MODULE;
  m->size = elf_size(p);
  m->image = malloc(m->size);
  memcpy(m->image, p, m->size);
  *out = m;
  return OK;
}
CUresult cuModuleUnload(Module *m) {
  CUresult r = gate();
  if (r) return r;
  if (!m || m->magic != MAGIC_MODULE) return INVALID_HANDLE;
  m->magic = 0;
  free(m->image);
  return OK;  /* the struct stays: a function handle must not dangle into freed memory */
}
CUresult cuModuleGetFunction(Func **out, Module *m, const char *name) {
  CUresult r = gate();
  if (r) return r;
  if (!m || m->magic != MAGIC_MODULE) return INVALID_HANDLE;
  size_t len = strlen(name);
  if (!len || len >= sizeof(((Func *)0)->name)) return INVALID_VALUE;
  char key[520];
  key[0] = 0;
  memcpy(key + 1, name, len + 1);  /* "\0name\0": a whole entry of the string table */
  if (!memmem(m->image, m->size, key, len + 2)) return NOT_FOUND;
  Func *f = calloc(1, sizeof *f);
  f->magic = MAGIC_FUNC;
  f->mod = m;
  f->max_dynamic_shared = 49152;
  memcpy(f->name, name, len + 1);
  *out = f;
  return OK;
}
CUresult cuFuncGetAttribute(int *value, int attr, Func *f) {
  CUresult r = gate();
  if (r) return r;
  if (!f || f->magic != MAGIC_FUNC) return INVALID_HANDLE;
  switch (attr) {
    case 0: *value = 1024; return OK;                   /* MAX_THREADS_PER_BLOCK */
    case 1: case 2: case 3: *value = 0; return OK;      /* shared, const, local bytes */
    case 4: *value = 32; return OK;                     /* NUM_REGS */
    case 5: case 6: *value = 90; return OK;             /* PTX / binary version */
    case 8: *value = f->max_dynamic_shared; return OK;
    default: return INVALID_VALUE;
  }
}
CUresult cuFuncSetAttribute(Func *f, int attr, int value) {
  CUresult r = gate();
  if (r) return r;
  if (!f || f->magic != MAGIC_FUNC) return INVALID_HANDLE;
  if (attr != 8) return OK;
  if (value < 0 || value > attrs[97]) return INVALID_VALUE;
  f->max_dynamic_shared = value;
  return OK;
}

static CUresult check_shape(const Func *f, const unsigned *d, unsigned shared) {
  if (!d[0] || !d[1] || !d[2] || !d[3] || !d[4] || !d[5]) return INVALID_VALUE;
  if (d[0] > (unsigned)attrs[5] || d[1] > (unsigned)attrs[6] || d[2] > (unsigned)attrs[7])
    return INVALID_VALUE;
  if (d[3] > (unsigned)attrs[2] || d[4] > (unsigned)attrs[3] || d[5] > (unsigned)attrs[4])
    return INVALID_VALUE;
  if ((unsigned long long)d[3] * d[4] * d[5] > (unsigned)attrs[1]) return INVALID_VALUE;
  if (shared > (unsigned)f->max_dynamic_shared) return INVALID_VALUE;
  return OK;
}

CUresult cuLaunchKernel(Func *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                        unsigned by, unsigned bz, unsigned shared, void *stream, void **params,
                        void **extra) {
  CUresult r = gate();
  if (r || (r = stream_ok(stream))) return r;
  if (!f || f->magic != MAGIC_FUNC || f->mod->magic != MAGIC_MODULE) return INVALID_HANDLE;
  if (extra) return INVALID_VALUE;  /* kiln passes kernelParams only */
  Op op = {.kind = 0, .fn = f, .dims = {gx, gy, gz, bx, by, bz}, .shared = shared};
  if ((r = check_shape(f, op.dims, shared))) return r;
  int n = on_nparams ? on_nparams(f->name, f->mod->image, f->mod->size) : 0;
  if (n < 0 || n > MAX_PARAMS) return LAUNCH_FAILED;
  if (n && !params) return INVALID_VALUE;
  op.nparams = n;
  for (int i = 0; i < n; i++) memcpy(&op.params[i], params[i], 8);  /* kiln's slots: 8 bytes */
  int captured;
  if ((r = enqueue(stream, &op, &captured))) {
    Stream *s = capturing(stream);
    if (s) s->invalid = 1;
    return r;
  }
  return captured ? OK : run_op(&op);
}

/* cuLaunchKernelEx's config and attributes, laid out as cuda.h has them (the attribute value
   is a 64-byte union after the id and 4 bytes of padding). Only the attribute kiln uses is
   accepted; programmatic dependent launch needs compute capability 9.0 or more. Kernels run
   one after another here, so an overlapped launch runs like any other. */
typedef struct { int id; char pad[4]; unsigned char value[64]; } LaunchAttr;
typedef struct {
  unsigned gx, gy, gz, bx, by, bz, shared; void *stream; LaunchAttr *attrs; unsigned nattrs;
} LaunchConfig;
#define ATTR_PROGRAMMATIC_STREAM_SERIALIZATION 6
#define ATTR_COMPUTE_CAPABILITY_MAJOR 75

CUresult cuLaunchKernelEx(const LaunchConfig *c, Func *f, void **params, void **extra) {
  if (!c || (c->nattrs && !c->attrs)) return INVALID_VALUE;
  int pdl = 0;
  for (unsigned i = 0; i < c->nattrs; i++) {
    int v;
    if (c->attrs[i].id != ATTR_PROGRAMMATIC_STREAM_SERIALIZATION) return INVALID_VALUE;
    memcpy(&v, c->attrs[i].value, sizeof v);
    pdl |= v != 0;
  }
  if (pdl && attrs[ATTR_COMPUTE_CAPABILITY_MAJOR] < 9) return INVALID_VALUE;
  CUresult r = cuLaunchKernel(f, c->gx, c->gy, c->gz, c->bx, c->by, c->bz, c->shared,
                              c->stream, params, extra);
  if (!r && pdl) {
    pthread_mutex_lock(&mu);
    overlapped++;
    pthread_mutex_unlock(&mu);
  }
  return r;
}

/* ------------------------------------------------------------------ streams and graphs */

CUresult cuStreamCreate(Stream **out, unsigned flags) {
  CUresult r = gate();
  if (r) return r;
  (void)flags;
  Stream *s = calloc(1, sizeof *s);
  s->magic = MAGIC_STREAM;
  *out = s;
  return OK;
}
CUresult cuStreamDestroy_v2(Stream *s) {
  CUresult r = gate();
  if (r) return r;
  if (LEGACY_STREAM(s) || s->magic != MAGIC_STREAM) return INVALID_HANDLE;
  s->magic = 0;
  free(s);
  return OK;
}
CUresult cuStreamSynchronize(void *stream) {
  CUresult r = gate();
  if (r || (r = stream_ok(stream))) return r;
  Stream *s = capturing(stream);
  if (s) { s->invalid = 1; return CAPTURE_UNSUPPORTED; }
  return LEGACY_STREAM(stream) ? no_sync_while_capturing() : OK;
}
CUresult cuStreamBeginCapture_v2(Stream *s, int mode) {
  CUresult r = gate();
  if (r) return r;
  if (LEGACY_STREAM(s)) return CAPTURE_UNSUPPORTED;
  if (s->magic != MAGIC_STREAM || mode < 0 || mode > 2) return INVALID_VALUE;
  if (s->capturing) return ILLEGAL_STATE;
  s->capturing = 1;
  s->invalid = 0;
  s->mode = mode;
  s->owner = pthread_self();
  s->graph = calloc(1, sizeof(Graph));
  s->graph->magic = MAGIC_GRAPH;
  if (mode != 2) thread_captures++;
  return OK;
}
CUresult cuStreamEndCapture(Stream *s, Graph **out) {
  if (!initialised) return NOT_INITIALIZED;
  if (LEGACY_STREAM(s) || s->magic != MAGIC_STREAM) return INVALID_HANDLE;
  if (!s->capturing) return ILLEGAL_STATE;
  if (s->mode == 1 && !pthread_equal(s->owner, pthread_self())) return CAPTURE_WRONG_THREAD;
  s->capturing = 0;
  if (s->mode != 2) thread_captures--;
  Graph *g = s->graph;
  s->graph = NULL;
  if (s->invalid) {
    free(g->ops);
    free(g);
    *out = NULL;
    return CAPTURE_INVALIDATED;
  }
  *out = g;
  return poisoned ? poisoned : OK;
}
CUresult cuGraphInstantiateWithFlags(Graph **out, Graph *g, unsigned long long flags) {
  CUresult r = gate();
  if (r) return r;
  (void)flags;
  if (!g || g->magic != MAGIC_GRAPH) return INVALID_VALUE;
  Graph *e = calloc(1, sizeof *e);
  e->magic = MAGIC_EXEC;
  e->n = e->cap = g->n;
  e->ops = malloc((g->n ? g->n : 1) * sizeof(Op));
  memcpy(e->ops, g->ops, g->n * sizeof(Op));
  *out = e;
  return OK;
}
CUresult cuGraphLaunch(Graph *e, void *stream) {
  CUresult r = gate();
  if (r || (r = stream_ok(stream))) return r;
  if (!e || e->magic != MAGIC_EXEC) return INVALID_VALUE;
  if (capturing(stream) || (LEGACY_STREAM(stream) && thread_captures)) return CAPTURE_UNSUPPORTED;
  for (int i = 0; i < e->n; i++) {
    const Op *op = &e->ops[i];
    if (op->kind == 0 && op->fn->mod->magic != MAGIC_MODULE) return INVALID_HANDLE;
    if ((r = run_op(op))) return r;
  }
  return OK;
}
static CUresult destroy_graph(Graph *g, unsigned magic) {
  if (!initialised) return NOT_INITIALIZED;
  if (!g || g->magic != magic) return INVALID_VALUE;
  g->magic = 0;
  free(g->ops);
  free(g);
  return OK;
}
CUresult cuGraphDestroy(Graph *g) { return destroy_graph(g, MAGIC_GRAPH); }
CUresult cuGraphExecDestroy(Graph *e) { return destroy_graph(e, MAGIC_EXEC); }

/* ------------------------------------------------------------------ events */

CUresult cuEventCreate(Event **out, unsigned flags) {
  CUresult r = gate();
  if (r) return r;
  Event *e = calloc(1, sizeof *e);
  e->magic = MAGIC_EVENT;
  e->flags = flags;
  *out = e;
  return OK;
}
CUresult cuEventRecord(Event *e, void *stream) {
  CUresult r = gate();
  if (r || (r = stream_ok(stream))) return r;
  if (!e || e->magic != MAGIC_EVENT) return INVALID_HANDLE;
  if (LEGACY_STREAM(stream) && thread_captures) return CAPTURE_IMPLICIT;
  if (capturing(stream)) return OK;  /* an event node: nothing to time */
  e->recorded = 1;
  e->t = now_ms();
  return OK;
}
CUresult cuEventQuery(Event *e) {
  CUresult r = gate();
  if (r) return r;
  return (e && e->magic == MAGIC_EVENT) ? OK : INVALID_HANDLE;
}
CUresult cuEventSynchronize(Event *e) {
  CUresult r = gate();
  if (r) return r;
  if (!e || e->magic != MAGIC_EVENT) return INVALID_HANDLE;
  return no_sync_while_capturing();
}
CUresult cuEventElapsedTime_v2(float *ms, Event *a, Event *b) {
  CUresult r = gate();
  if (r) return r;
  if (!a || !b || a->magic != MAGIC_EVENT || b->magic != MAGIC_EVENT) return INVALID_HANDLE;
  if (!a->recorded || !b->recorded || (a->flags & 2) || (b->flags & 2)) return INVALID_HANDLE;
  *ms = (float)(b->t - a->t);
  return OK;
}
CUresult cuEventDestroy_v2(Event *e) {
  CUresult r = gate();
  if (r) return r;
  if (!e || e->magic != MAGIC_EVENT) return INVALID_HANDLE;
  e->magic = 0;
  free(e);
  return OK;
}

/* ------------------------------------------------------------------ entry points */

/* NVRTC opens libcuda.so.1 when it is there and asks for the driver's private export tables;
   without this symbol it crashes. Saying "not supported" makes it carry on as with no driver. */
CUresult cuGetExportTable(const void **table, const void *id) {
  (void)id;
  if (table) *table = NULL;
  return 801;  /* CUDA_ERROR_NOT_SUPPORTED */
}

typedef struct { const char *name; void *fn; int min_version; } Entry;
static const Entry entries[] = {
    {"cuInit", cuInit, 0}, {"cuDriverGetVersion", cuDriverGetVersion, 0},
    {"cuDeviceGetCount", cuDeviceGetCount, 0}, {"cuDeviceGet", cuDeviceGet, 0},
    {"cuDeviceGetName", cuDeviceGetName, 0}, {"cuDeviceTotalMem", cuDeviceTotalMem_v2, 3020},
    {"cuDeviceGetAttribute", cuDeviceGetAttribute, 0},
    {"cuDevicePrimaryCtxRetain", cuDevicePrimaryCtxRetain, 0},
    {"cuCtxSetCurrent", cuCtxSetCurrent, 0}, {"cuCtxGetCurrent", cuCtxGetCurrent, 0},
    {"cuCtxSynchronize", cuCtxSynchronize, 0}, {"cuCtxSynchronize", cuCtxSynchronize_v2, 13000},
    {"cuGetErrorName", cuGetErrorName, 0}, {"cuGetErrorString", cuGetErrorString, 0},
    {"cuMemAlloc", cuMemAlloc_v2, 3020}, {"cuMemFree", cuMemFree_v2, 3020},
    {"cuMemGetInfo", cuMemGetInfo_v2, 3020}, {"cuMemcpyHtoD", cuMemcpyHtoD_v2, 3020},
    {"cuMemcpyDtoH", cuMemcpyDtoH_v2, 3020}, {"cuMemcpyDtoD", cuMemcpyDtoD_v2, 3020},
    {"cuMemcpyDtoDAsync", cuMemcpyDtoDAsync_v2, 3020}, {"cuMemsetD8", cuMemsetD8_v2, 3020},
    {"cuMemsetD8Async", cuMemsetD8Async, 3020}, {"cuModuleLoadData", cuModuleLoadData, 0},
    {"cuModuleUnload", cuModuleUnload, 0}, {"cuModuleGetFunction", cuModuleGetFunction, 0},
    {"cuFuncGetAttribute", cuFuncGetAttribute, 0}, {"cuFuncSetAttribute", cuFuncSetAttribute, 0},
    {"cuLaunchKernel", cuLaunchKernel, 0}, {"cuLaunchKernelEx", cuLaunchKernelEx, 0},
    {"cuStreamCreate", cuStreamCreate, 0},
    {"cuStreamDestroy", cuStreamDestroy_v2, 4000},
    {"cuStreamSynchronize", cuStreamSynchronize, 0},
    {"cuStreamBeginCapture", cuStreamBeginCapture_v2, 10010},
    {"cuStreamEndCapture", cuStreamEndCapture, 0},
    {"cuGraphInstantiateWithFlags", cuGraphInstantiateWithFlags, 0},
    {"cuGraphLaunch", cuGraphLaunch, 0}, {"cuGraphDestroy", cuGraphDestroy, 0},
    {"cuGraphExecDestroy", cuGraphExecDestroy, 0}, {"cuEventCreate", cuEventCreate, 0},
    {"cuEventRecord", cuEventRecord, 0}, {"cuEventQuery", cuEventQuery, 0},
    {"cuEventSynchronize", cuEventSynchronize, 0},
    {"cuEventElapsedTime", cuEventElapsedTime_v2, 0},
    {"cuEventDestroy", cuEventDestroy_v2, 4000},
};

/* The bindings ask for each entry point by its base name and the API version it was written
   against; an entry whose ABI changed at a version (cuCtxSynchronize at 13.0) is matched by
   the highest version not above the one asked for. Names not listed are "not found": the
   bindings then raise only if that function is called. */
CUresult cuGetProcAddress_v2(const char *sym, void **pfn, int version, unsigned long long flags,
                             int *status) {
  (void)flags;
  const Entry *best = NULL;
  for (size_t i = 0; i < sizeof entries / sizeof entries[0]; i++)
    if (!strcmp(entries[i].name, sym) && entries[i].min_version <= version &&
        (!best || entries[i].min_version > best->min_version))
      best = &entries[i];
  if (status) *status = best ? 0 : 1;  /* CU_GET_PROC_ADDRESS_SUCCESS / SYMBOL_NOT_FOUND */
  *pfn = best ? best->fn : NULL;
  return best ? OK : NOT_FOUND;
}
