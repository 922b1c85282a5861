// The Python module shufflenet_fused._C. Importing it runs the static
// TORCH_LIBRARY registrations of the other sources (the ops); its one Python
// function is the per-call staleness check of the inference pipeline
// (shufflenet_fused/inference/pipeline.py), which plain Python makes a few
// percent of a batch-1 network call. Written against the Python C API, not
// pybind11 (torch/extension.h), which keeps compile times down.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

namespace {

// all_identical(dicts, keys, values) -> bool: whether dicts[i].get(keys[i]) is
// values[i] for every i (three lists of one length). The pipeline keeps the
// modules' dicts (_modules, _parameters, _buffers, __dict__), the keys read
// and the objects read at its last build; holding those objects keeps their
// ids from being reused. A C loop: the check runs once per call, right after
// a call that evicted these objects from the caches, so what it costs is
// mostly one cache miss per dict and key, which the interpreter would
// serialise behind its own bookkeeping.
PyObject* all_identical(PyObject* /*self*/, PyObject* args) {
  PyObject *dicts = nullptr, *keys = nullptr, *values = nullptr;
  if (!PyArg_ParseTuple(args, "O!O!O!:all_identical", &PyList_Type, &dicts, &PyList_Type, &keys, &PyList_Type,
                        &values)) {
    return nullptr;
  }
  const Py_ssize_t n = PyList_GET_SIZE(dicts);
  if (PyList_GET_SIZE(keys) != n || PyList_GET_SIZE(values) != n) {
    PyErr_SetString(PyExc_ValueError, "all_identical: dicts, keys and values must have one length");
    return nullptr;
  }
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* d = PyList_GET_ITEM(dicts, i);
    if (!PyDict_Check(d)) {
      PyErr_Format(PyExc_TypeError, "all_identical: dicts[%zd] is a %s, not a dict", i, Py_TYPE(d)->tp_name);
      return nullptr;
    }
    // A borrowed reference, or null for a missing key (or an error in the
    // key's __eq__, raised here).
    PyObject* now = PyDict_GetItemWithError(d, PyList_GET_ITEM(keys, i));
    if (now == nullptr && PyErr_Occurred()) return nullptr;
    if (now != PyList_GET_ITEM(values, i)) Py_RETURN_FALSE;
  }
  Py_RETURN_TRUE;
}

PyMethodDef methods[] = {
    {"all_identical", all_identical, METH_VARARGS,
     "all_identical(dicts, keys, values) -> bool: dicts[i].get(keys[i]) is values[i] for every i."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

extern "C" {
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT, "_C", nullptr, -1, methods, nullptr, nullptr, nullptr, nullptr};
  return PyModule_Create(&module_def);
}
}
