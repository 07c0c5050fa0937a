// Python module stylegan2_ops._C (or the JIT build's name): importing it registers the CUDA
// implementations of the stylegan2_ops operators (see the TORCH_LIBRARY_IMPL blocks) and
// exposes what the loader needs to judge it: the archs and versions it was built for, and a
// probe that says whether the current GPU can run its kernels.

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string>

#include <torch/version.h>

#include "bias_act.h"

#define SG2_STR_(x) #x
#define SG2_STR(x) SG2_STR_(x)
#define SG2_CONCAT_(a, b) a##b
#define SG2_CONCAT(a, b) SG2_CONCAT_(a, b)

// Set by the build as one token, e.g. 7.5_8.0_9.0+PTX (";" would not survive the shell).
#ifdef SG2_CUDA_ARCHS
#define SG2_CUDA_ARCHS_STRING SG2_STR(SG2_CUDA_ARCHS)
#else
#define SG2_CUDA_ARCHS_STRING "unknown"
#endif

namespace {

PyObject* probe(PyObject* /*self*/, PyObject* /*args*/) {
  int binary_version = 0;
  std::string error;
  bool ok;
  Py_BEGIN_ALLOW_THREADS
  ok = sg2::probe_kernel_image(&binary_version, &error);
  Py_END_ALLOW_THREADS
  if (!ok) {
    PyErr_SetString(PyExc_RuntimeError, error.c_str());
    return nullptr;
  }
  return PyLong_FromLong(binary_version);
}

PyMethodDef methods[] = {
    {"probe", probe, METH_NOARGS,
     "Returns the SASS version of the kernels the current GPU runs; raises RuntimeError when "
     "the extension has no code for this GPU."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, SG2_STR(TORCH_EXTENSION_NAME),
    "Compiled CUDA kernels for stylegan2_ops (upfirdn2d, bias_act).", -1, methods,
};

}  // namespace

PyMODINIT_FUNC SG2_CONCAT(PyInit_, TORCH_EXTENSION_NAME)(void) {
  PyObject* module = PyModule_Create(&module_def);
  if (module == nullptr) return nullptr;
  const std::string torch_version = std::to_string(TORCH_VERSION_MAJOR) + "." +
                                    std::to_string(TORCH_VERSION_MINOR) + "." +
                                    std::to_string(TORCH_VERSION_PATCH);
  if (PyModule_AddStringConstant(module, "cuda_archs", SG2_CUDA_ARCHS_STRING) < 0 ||
      PyModule_AddStringConstant(module, "torch_version", torch_version.c_str()) < 0 ||
      PyModule_AddIntConstant(module, "cuda_version", sg2::compiled_cuda_version()) < 0) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
