/* The user-data writer's per-event comparison in C (auditor.store.userdata_values).

   diff(before, after): the keys of `after` whose value `before` lacks, differs from, or holds
   with another type, with `after`'s values; None when there is none. inexact(values): whether
   a value is a float that may stand for an integer read inexactly (finite, |x| >= 2**53).

   Both must answer exactly what the Python reference in userdata_values.py answers, for any
   input (tests/unit/test_udc.py compares them under hypothesis): the values are compared with
   Python's `!=` (PyObject_RichCompare, no identity shortcut: a NaN differs from itself), the
   types with `is not`. Only exact dicts are accepted (a subclass may answer `in` and `[]` its
   own way); the wrapper sends anything else to Python. Every borrowed reference is held
   across a comparison, which can run arbitrary Python (__eq__ of a value that is not JSON)
   and mutate the dicts; a dict mutated meanwhile raises RuntimeError, as Python's iteration
   would. No Python-free stretch is long enough to be worth releasing the GIL. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>

/* 1 when `old` and `new` differ (type or `!=`), 0 when not, -1 on error. */
static int
differs(PyObject *old, PyObject *new)
{
    PyTypeObject *type = Py_TYPE(new);
    if (Py_TYPE(old) != type)
        return 1;
    if (old == new && (type == &PyUnicode_Type || type == &PyLong_Type || type == &PyBool_Type
                       || new == Py_None))
        return 0; /* equality of these is reflexive: the one case identity may decide */
    if (type == &PyUnicode_Type) {
        /* the common case (routing values, notes): equal length and bytes */
        if (PyUnicode_GET_LENGTH(old) != PyUnicode_GET_LENGTH(new))
            return 1;
    }
    PyObject *ne = PyObject_RichCompare(old, new, Py_NE);
    if (ne == NULL)
        return -1;
    int result = PyObject_IsTrue(ne);
    Py_DECREF(ne);
    return result;
}

static PyObject *
udc_diff(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "diff() takes exactly 2 arguments (before, after)");
        return NULL;
    }
    PyObject *before = args[0], *after = args[1];
    if (!PyDict_CheckExact(before) || !PyDict_CheckExact(after)) {
        PyErr_SetString(PyExc_TypeError, "diff() compares two dicts");
        return NULL;
    }
    Py_INCREF(before);
    Py_INCREF(after);
    PyObject *changed = NULL, *result = NULL;
    Py_ssize_t size = PyDict_GET_SIZE(after), pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(after, &pos, &key, &value)) {
        Py_INCREF(key);
        Py_INCREF(value);
        int d = 1;
        PyObject *old = PyDict_GetItemWithError(before, key);
        if (old != NULL) {
            Py_INCREF(old);
            d = differs(old, value);
            Py_DECREF(old);
        }
        else if (PyErr_Occurred())
            d = -1;
        if (d == 1) {
            if (changed == NULL && (changed = PyDict_New()) == NULL)
                d = -1;
            else if (PyDict_SetItem(changed, key, value) < 0)
                d = -1;
        }
        Py_DECREF(key);
        Py_DECREF(value);
        if (d < 0)
            goto done;
        if (PyDict_GET_SIZE(after) != size) {
            PyErr_SetString(PyExc_RuntimeError, "dictionary changed size during iteration");
            goto done;
        }
    }
    result = changed != NULL ? changed : Py_None;
    Py_INCREF(result);
done:
    Py_XDECREF(changed);
    Py_DECREF(before);
    Py_DECREF(after);
    return result;
}

/* 2**53: from here on every finite double is an integer, and not every integer a double. */
#define EXACT_LIMIT 9007199254740992.0

static PyObject *
udc_inexact(PyObject *Py_UNUSED(module), PyObject *values)
{
    if (!PyDict_CheckExact(values)) {
        PyErr_SetString(PyExc_TypeError, "inexact() reads a dict");
        return NULL;
    }
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    /* no Python runs in this loop: the dict cannot change under it */
    while (PyDict_Next(values, &pos, &key, &value)) {
        if (PyFloat_CheckExact(value)) {
            double x = PyFloat_AS_DOUBLE(value);
            if (isfinite(x) && fabs(x) >= EXACT_LIMIT)
                Py_RETURN_TRUE;
        }
    }
    Py_RETURN_FALSE;
}

static PyMethodDef udc_methods[] = {
    {"diff", (PyCFunction)(void (*)(void))udc_diff, METH_FASTCALL,
     "diff(before, after, /): the keys of after whose value differs from before's (value or"
     " type), with after's values; None when none does."},
    {"inexact", udc_inexact, METH_O,
     "inexact(values, /): whether a value is a finite float of magnitude 2**53 or more."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef udc_module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "_udc",
    .m_doc = "The user-data writer's map comparison in C (auditor.store.userdata_values).",
    .m_size = -1,
    .m_methods = udc_methods,
};

PyMODINIT_FUNC
PyInit__udc(void)
{
    return PyModule_Create(&udc_module);
}
