/* Leaf bytes in C: RFC 8785 canonical JSON of a row's audited fields (docs/evidence.md).
 *
 * An accelerator, never a second definition: it writes exactly the bytes of
 * auditor.evidence.canonical.canonical_bytes (of leaves.leaf_object), or returns None, and
 * the caller then takes the Python path (auditor/evidence/leaves.py), which stays the
 * reference. None is returned for whatever this file does not handle exactly:
 *
 * - any float (RFC 8785's number form is the Python reference's job), integers outside
 *   int64, bool/None/str/int/list/dict subclasses and every other type;
 * - object keys with a character beyond U+FFFF (RFC 8785 sorts keys by UTF-16 code units;
 *   for keys within the BMP that is code point order, which is what is used here);
 * - surrogate code points (no UTF-8 form: the reference refuses them);
 * - nesting deeper than MAX_DEPTH;
 * - timestamps that are naive, not exact datetimes, or not at offset zero; UUIDs that are
 *   not exact uuid.UUID; bytes that are not exact bytes; inet values that are not a str
 *   with a prefix length; JSON text that the given loads() refuses.
 *
 * Strings are written as canonical.py writes them: UTF-8, with only '"', '\' and the
 * controls below U+0020 escaped (\b \t \n \f \r short, the rest as lowercase \u00xx).
 *
 * Errors: a MemoryError (or an exception that is not an Exception, e.g. KeyboardInterrupt)
 * propagates; any other exception raised by Python code this calls (loads, utcoffset, the
 * UUID's int) is cleared and the answer is None, so the Python path meets it again. No
 * Python code runs while a container is walked (only exact builtin types are read), so the
 * borrowed references of that walk stay valid.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 64
#define STACK_BYTES 4096
#define SMALL_DICT 16
#define CHUNK_CHARS 4096

enum { DONE = 0, UNSUPPORTED = 1, FAILED = -1 };

enum kind {
    K_TEXT,
    K_INTEGER,
    K_TIMESTAMP,
    K_UUID,
    K_BYTES,
    K_ARRAY,
    K_INET,
    K_JSON,   /* a jsonb column: JSON text (str or bytes, read by loads) or Parsed */
    K_VALUE,  /* a jsonb column given as its parsed value; Python None is JSON null */
    K_SOURCE, /* the constant "source" member */
};

static const char *const KIND_NAMES[] = {
    "text", "integer", "timestamp", "uuid", "bytes", "array", "inet", "json", "value", NULL,
};

/* ---- output buffer --------------------------------------------------------------------- */

typedef struct {
    char *data;
    Py_ssize_t len;
    Py_ssize_t cap;
    int heap;
} Buf;

static int
grow(Buf *b, Py_ssize_t extra)
{
    if (extra > PY_SSIZE_T_MAX - b->len) {
        PyErr_NoMemory();
        return FAILED;
    }
    Py_ssize_t need = b->len + extra;
    Py_ssize_t cap = b->cap;
    while (cap < need) {
        cap = cap > PY_SSIZE_T_MAX / 2 ? need : cap * 2;
    }
    char *data;
    if (b->heap) {
        data = PyMem_Realloc(b->data, (size_t)cap);
    }
    else {
        data = PyMem_Malloc((size_t)cap);
        if (data != NULL) {
            memcpy(data, b->data, (size_t)b->len);
        }
    }
    if (data == NULL) {
        PyErr_NoMemory();
        return FAILED;
    }
    b->data = data;
    b->cap = cap;
    b->heap = 1;
    return DONE;
}

static inline int
reserve(Buf *b, Py_ssize_t extra)
{
    if (extra <= b->cap - b->len) {
        return DONE;
    }
    return grow(b, extra);
}

static inline int
put(Buf *b, const char *text, Py_ssize_t n)
{
    if (reserve(b, n) < 0) {
        return FAILED;
    }
    memcpy(b->data + b->len, text, (size_t)n);
    b->len += n;
    return DONE;
}

static inline int
put_char(Buf *b, char c)
{
    if (reserve(b, 1) < 0) {
        return FAILED;
    }
    b->data[b->len++] = c;
    return DONE;
}

/* What an entry point returns for its buffer: the bytes written (DONE), None (UNSUPPORTED: the
 * Python path takes it), or NULL with the exception set (FAILED); the buffer is freed. */
static PyObject *
finish(Buf *b, int r)
{
    PyObject *result = NULL;
    if (r == DONE) {
        result = PyBytes_FromStringAndSize(b->data, b->len);
    }
    else if (r == UNSUPPORTED) {
        result = Py_NewRef(Py_None);
    }
    if (b->heap) {
        PyMem_Free(b->data);
    }
    return result;
}

/* An error raised by Python code this called: None (the Python path meets it again),
 * unless it is a MemoryError or not an Exception at all. */
static int
called_failed(void)
{
    if (PyErr_ExceptionMatches(PyExc_MemoryError) ||
        !PyErr_ExceptionMatches(PyExc_Exception)) {
        return FAILED;
    }
    PyErr_Clear();
    return UNSUPPORTED;
}

/* ---- strings --------------------------------------------------------------------------- */

/* 1 where an ASCII byte must be escaped: the controls, '"' and '\'. */
static unsigned char ESCAPE[128];
static const char HEX[] = "0123456789abcdef";

/* Whether any of eight ASCII bytes must be escaped (exact for bytes below 0x80: a byte
 * below 0x20, or one equal to '"' or '\'). */
static inline int
needs_escape8(const unsigned char *p)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t w;
    memcpy(&w, p, 8);
    uint64_t low = (w - ones * 0x20) & ~w & highs;
    uint64_t quote = w ^ (ones * '"');
    uint64_t backslash = w ^ (ones * '\\');
    quote = (quote - ones) & ~quote & highs;
    backslash = (backslash - ones) & ~backslash & highs;
    return (low | quote | backslash) != 0;
}

static inline char *
put_escape(char *out, Py_UCS4 c)
{
    *out++ = '\\';
    switch (c) {
    case '"': *out++ = '"'; break;
    case '\\': *out++ = '\\'; break;
    case '\b': *out++ = 'b'; break;
    case '\t': *out++ = 't'; break;
    case '\n': *out++ = 'n'; break;
    case '\f': *out++ = 'f'; break;
    case '\r': *out++ = 'r'; break;
    default:
        *out++ = 'u';
        *out++ = '0';
        *out++ = '0';
        *out++ = HEX[c >> 4];
        *out++ = HEX[c & 15];
    }
    return out;
}

/* One chunk of code points of a str of any kind into out (room for 6 bytes a code point);
 * returns the new end, or NULL at a surrogate code point. */
#define WRITE_CHUNK(TYPE)                                                                  \
    static char *write_chunk_##TYPE(char *out, const TYPE *p, Py_ssize_t n)                \
    {                                                                                      \
        for (Py_ssize_t i = 0; i < n; i++) {                                               \
            Py_UCS4 c = p[i];                                                              \
            if (c < 0x80) {                                                                \
                if (ESCAPE[c]) {                                                           \
                    out = put_escape(out, c);                                              \
                }                                                                          \
                else {                                                                     \
                    *out++ = (char)c;                                                      \
                }                                                                          \
            }                                                                              \
            else if (c < 0x800) {                                                          \
                *out++ = (char)(0xc0 | (c >> 6));                                          \
                *out++ = (char)(0x80 | (c & 0x3f));                                        \
            }                                                                              \
            else if (c < 0x10000) {                                                        \
                if (c >= 0xd800 && c <= 0xdfff) {                                          \
                    return NULL;                                                           \
                }                                                                          \
                *out++ = (char)(0xe0 | (c >> 12));                                         \
                *out++ = (char)(0x80 | ((c >> 6) & 0x3f));                                 \
                *out++ = (char)(0x80 | (c & 0x3f));                                        \
            }                                                                              \
            else {                                                                         \
                *out++ = (char)(0xf0 | (c >> 18));                                         \
                *out++ = (char)(0x80 | ((c >> 12) & 0x3f));                                \
                *out++ = (char)(0x80 | ((c >> 6) & 0x3f));                                 \
                *out++ = (char)(0x80 | (c & 0x3f));                                        \
            }                                                                              \
        }                                                                                  \
        return out;                                                                        \
    }

WRITE_CHUNK(Py_UCS1)
WRITE_CHUNK(Py_UCS2)
WRITE_CHUNK(Py_UCS4)

/* A str's canonical (PEP 393) form: always there since 3.12; before, a string made by the
 * deprecated wstr APIs gets it on first use. */
static inline int
ready(PyObject *s)
{
#if PY_VERSION_HEX < 0x030C0000
    return PyUnicode_READY(s);
#else
    (void)s;
    return 0;
#endif
}

/* An exact str as a JSON string. */
static int
write_str(Buf *b, PyObject *s)
{
    if (ready(s) < 0) {
        return FAILED;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    if (put_char(b, '"') < 0) {
        return FAILED;
    }
    if (PyUnicode_IS_ASCII(s)) {
        /* Runs without escapes copied whole (nearly every string of a GWS payload is one),
         * found eight bytes at a time. */
        const unsigned char *p = data;
        Py_ssize_t start = 0;
        for (;;) {
            Py_ssize_t i = start;
            while (i + 8 <= n && !needs_escape8(p + i)) {
                i += 8;
            }
            while (i < n && !ESCAPE[p[i]]) {
                i++;
            }
            if (reserve(b, i - start + 7) < 0) {
                return FAILED;
            }
            memcpy(b->data + b->len, p + start, (size_t)(i - start));
            b->len += i - start;
            if (i == n) {
                break;
            }
            b->len = put_escape(b->data + b->len, p[i]) - b->data;
            start = i + 1;
        }
        b->data[b->len++] = '"';
        return DONE;
    }
    /* Chunk by chunk, so a long string never reserves six times its length at once. */
    for (Py_ssize_t at = 0; at < n; at += CHUNK_CHARS) {
        Py_ssize_t count = n - at < CHUNK_CHARS ? n - at : CHUNK_CHARS;
        if (reserve(b, count * 6) < 0) {
            return FAILED;
        }
        char *out = b->data + b->len;
        if (kind == PyUnicode_1BYTE_KIND) {
            out = write_chunk_Py_UCS1(out, (const Py_UCS1 *)data + at, count);
        }
        else if (kind == PyUnicode_2BYTE_KIND) {
            out = write_chunk_Py_UCS2(out, (const Py_UCS2 *)data + at, count);
        }
        else {
            out = write_chunk_Py_UCS4(out, (const Py_UCS4 *)data + at, count);
        }
        if (out == NULL) {
            return UNSUPPORTED; /* a surrogate code point: no UTF-8 form */
        }
        b->len = out - b->data;
    }
    return put_char(b, '"');
}

/* ---- numbers --------------------------------------------------------------------------- */

static int
write_int(Buf *b, PyObject *v)
{
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow) {
        return UNSUPPORTED;
    }
    if (x == -1 && PyErr_Occurred()) {
        return FAILED;
    }
    char digits[24];
    char *end = digits + sizeof digits;
    char *p = end;
    unsigned long long u = x < 0 ? 0ULL - (unsigned long long)x : (unsigned long long)x;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (x < 0) {
        *--p = '-';
    }
    return put(b, p, end - p);
}

/* ---- JSON values ----------------------------------------------------------------------- */

typedef struct {
    PyObject *key;
    PyObject *value;
} Entry;

/* Code point order; for keys within the BMP (the only ones taken) that is the UTF-16
 * order RFC 8785 sorts by. */
static int
key_cmp(PyObject *a, PyObject *b)
{
    Py_ssize_t la = PyUnicode_GET_LENGTH(a), lb = PyUnicode_GET_LENGTH(b);
    Py_ssize_t n = la < lb ? la : lb;
    int ka = PyUnicode_KIND(a), kb = PyUnicode_KIND(b);
    const void *da = PyUnicode_DATA(a), *db = PyUnicode_DATA(b);
    if (ka == PyUnicode_1BYTE_KIND && kb == PyUnicode_1BYTE_KIND) {
        const unsigned char *pa = da, *pb = db; /* short keys: no call to memcmp */
        for (Py_ssize_t i = 0; i < n; i++) {
            if (pa[i] != pb[i]) {
                return pa[i] < pb[i] ? -1 : 1;
            }
        }
    }
    else {
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_UCS4 ca = PyUnicode_READ(ka, da, i), cb = PyUnicode_READ(kb, db, i);
            if (ca != cb) {
                return ca < cb ? -1 : 1;
            }
        }
    }
    return la < lb ? -1 : la > lb;
}

static int
entry_cmp(const void *a, const void *b)
{
    return key_cmp(((const Entry *)a)->key, ((const Entry *)b)->key);
}

static int write_value(Buf *b, PyObject *v, int depth);

static int
write_dict(Buf *b, PyObject *d, int depth)
{
    Py_ssize_t n = PyDict_GET_SIZE(d);
    if (n == 0) {
        return put(b, "{}", 2);
    }
    Entry small[SMALL_DICT];
    Entry *entries = small;
    if (n > SMALL_DICT) {
        if ((size_t)n > PY_SSIZE_T_MAX / sizeof(Entry)) {
            PyErr_NoMemory();
            return FAILED;
        }
        entries = PyMem_Malloc((size_t)n * sizeof(Entry));
        if (entries == NULL) {
            PyErr_NoMemory();
            return FAILED;
        }
    }
    int result = UNSUPPORTED;
    Py_ssize_t pos = 0, count = 0;
    PyObject *key, *value;
    while (PyDict_Next(d, &pos, &key, &value)) {
        if (count == n || !PyUnicode_CheckExact(key)) {
            goto done; /* a key that is no str */
        }
        if (ready(key) < 0) {
            result = FAILED;
            goto done;
        }
        if (PyUnicode_KIND(key) == PyUnicode_4BYTE_KIND) {
            goto done; /* a key beyond U+FFFF */
        }
        entries[count].key = key;
        entries[count].value = value;
        count++;
    }
    if (count != n) {
        goto done;
    }
    if (n <= SMALL_DICT) { /* insertion sort: GWS objects have a few keys each */
        for (Py_ssize_t i = 1; i < n; i++) {
            Entry e = entries[i];
            Py_ssize_t j = i;
            while (j > 0 && key_cmp(entries[j - 1].key, e.key) > 0) {
                entries[j] = entries[j - 1];
                j--;
            }
            entries[j] = e;
        }
    }
    else {
        qsort(entries, (size_t)n, sizeof(Entry), entry_cmp);
    }
    if ((result = put_char(b, '{')) < 0) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i && (result = put_char(b, ',')) < 0) {
            goto done;
        }
        if ((result = write_str(b, entries[i].key)) != DONE) {
            goto done;
        }
        if ((result = put_char(b, ':')) < 0) {
            goto done;
        }
        if ((result = write_value(b, entries[i].value, depth + 1)) != DONE) {
            goto done;
        }
    }
    result = put_char(b, '}');
done:
    if (entries != small) {
        PyMem_Free(entries);
    }
    return result;
}

static int
write_sequence(Buf *b, PyObject *seq, int depth)
{
    int r;
    if ((r = put_char(b, '[')) < 0) {
        return r;
    }
    /* The size read at every step: nothing here can change it, but no read past it. */
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        if (i && (r = put_char(b, ',')) < 0) {
            return r;
        }
        if ((r = write_value(b, PySequence_Fast_GET_ITEM(seq, i), depth + 1)) != DONE) {
            return r;
        }
    }
    return put_char(b, ']');
}

static int
write_value(Buf *b, PyObject *v, int depth)
{
    PyTypeObject *type = Py_TYPE(v);
    if (type == &PyUnicode_Type) {
        return write_str(b, v);
    }
    if (type == &PyLong_Type) {
        return write_int(b, v);
    }
    if (depth > MAX_DEPTH) {
        return UNSUPPORTED;
    }
    if (type == &PyDict_Type) {
        return write_dict(b, v, depth);
    }
    if (type == &PyList_Type) {
        return write_sequence(b, v, depth);
    }
    if (v == Py_None) {
        return put(b, "null", 4);
    }
    if (v == Py_True) {
        return put(b, "true", 4);
    }
    if (v == Py_False) {
        return put(b, "false", 5);
    }
    return UNSUPPORTED; /* a float, a tuple, a subclass, anything else */
}

/* ---- column values --------------------------------------------------------------------- */

static PyObject *UUID_TYPE;  /* uuid.UUID */
static PyObject *STR_INT;    /* "int" */
static PyObject *STR_UTCOFFSET;
static PyObject *SIXTY_FOUR; /* 64 */

static inline char *
digits(char *out, int value, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        out[i] = (char)('0' + value % 10);
        value /= 10;
    }
    return out + width;
}

/* "YYYY-MM-DDTHH:MM:SS.ffffffZ" of an aware datetime at offset zero. */
static int
write_timestamp(Buf *b, PyObject *v)
{
    if (!PyDateTime_CheckExact(v)) {
        return UNSUPPORTED;
    }
    PyObject *tz = PyDateTime_DATE_GET_TZINFO(v);
    if (tz == Py_None) {
        return UNSUPPORTED; /* naive: the Python path says why it is refused */
    }
    if (tz != PyDateTime_TimeZone_UTC) {
        PyObject *offset = PyObject_CallMethodNoArgs(v, STR_UTCOFFSET);
        if (offset == NULL) {
            return called_failed();
        }
        int zero = PyDelta_CheckExact(offset) && PyDateTime_DELTA_GET_DAYS(offset) == 0 &&
                   PyDateTime_DELTA_GET_SECONDS(offset) == 0 &&
                   PyDateTime_DELTA_GET_MICROSECONDS(offset) == 0;
        Py_DECREF(offset);
        if (!zero) {
            return UNSUPPORTED; /* converted to UTC by the Python path */
        }
    }
    if (reserve(b, 29) < 0) {
        return FAILED;
    }
    char *out = b->data + b->len;
    *out++ = '"';
    out = digits(out, PyDateTime_GET_YEAR(v), 4);
    *out++ = '-';
    out = digits(out, PyDateTime_GET_MONTH(v), 2);
    *out++ = '-';
    out = digits(out, PyDateTime_GET_DAY(v), 2);
    *out++ = 'T';
    out = digits(out, PyDateTime_DATE_GET_HOUR(v), 2);
    *out++ = ':';
    out = digits(out, PyDateTime_DATE_GET_MINUTE(v), 2);
    *out++ = ':';
    out = digits(out, PyDateTime_DATE_GET_SECOND(v), 2);
    *out++ = '.';
    out = digits(out, PyDateTime_DATE_GET_MICROSECOND(v), 6);
    *out++ = 'Z';
    *out++ = '"';
    b->len = out - b->data;
    return DONE;
}

/* Lowercase, hyphenated: str() of an exact uuid.UUID. */
static int
write_uuid(Buf *b, PyObject *v)
{
    if ((PyObject *)Py_TYPE(v) != UUID_TYPE) {
        return UNSUPPORTED;
    }
    PyObject *number = PyObject_GetAttr(v, STR_INT);
    if (number == NULL) {
        return called_failed();
    }
    if (!PyLong_CheckExact(number)) {
        Py_DECREF(number);
        return UNSUPPORTED;
    }
    unsigned long long low = PyLong_AsUnsignedLongLongMask(number);
    PyObject *upper = PyNumber_Rshift(number, SIXTY_FOUR);
    Py_DECREF(number);
    if (upper == NULL) {
        return called_failed();
    }
    unsigned long long high = PyLong_AsUnsignedLongLong(upper); /* < 0 or >= 2**64: error */
    Py_DECREF(upper);
    if (high == (unsigned long long)-1 && PyErr_Occurred()) {
        return called_failed();
    }
    if (reserve(b, 38) < 0) {
        return FAILED;
    }
    char *out = b->data + b->len;
    *out++ = '"';
    for (int i = 0; i < 32; i++) {
        if (i == 8 || i == 12 || i == 16 || i == 20) {
            *out++ = '-';
        }
        unsigned long long word = i < 16 ? high : low;
        *out++ = HEX[(word >> (60 - 4 * (i % 16))) & 15];
    }
    *out++ = '"';
    b->len = out - b->data;
    return DONE;
}

static const char BASE64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Standard base64 with padding (base64.b64encode) of exact bytes. */
static int
write_bytes(Buf *b, PyObject *v)
{
    if (!PyBytes_CheckExact(v)) {
        return UNSUPPORTED;
    }
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(v);
    Py_ssize_t n = PyBytes_GET_SIZE(v);
    if (n / 3 >= (PY_SSIZE_T_MAX - 8) / 4) {
        PyErr_NoMemory();
        return FAILED;
    }
    if (reserve(b, (n + 2) / 3 * 4 + 2) < 0) {
        return FAILED;
    }
    char *out = b->data + b->len;
    *out++ = '"';
    Py_ssize_t i = 0;
    for (; i + 2 < n; i += 3) {
        unsigned int w = (unsigned int)p[i] << 16 | (unsigned int)p[i + 1] << 8 | p[i + 2];
        *out++ = BASE64[w >> 18];
        *out++ = BASE64[(w >> 12) & 63];
        *out++ = BASE64[(w >> 6) & 63];
        *out++ = BASE64[w & 63];
    }
    if (n - i == 1) {
        unsigned int w = (unsigned int)p[i] << 16;
        *out++ = BASE64[w >> 18];
        *out++ = BASE64[(w >> 12) & 63];
        *out++ = '=';
        *out++ = '=';
    }
    else if (n - i == 2) {
        unsigned int w = (unsigned int)p[i] << 16 | (unsigned int)p[i + 1] << 8;
        *out++ = BASE64[w >> 18];
        *out++ = BASE64[(w >> 12) & 63];
        *out++ = BASE64[(w >> 6) & 63];
        *out++ = '=';
    }
    *out++ = '"';
    b->len = out - b->data;
    return DONE;
}

/* ---- the Plan: one source's leaf ------------------------------------------------------- */

typedef struct {
    PyObject *name;    /* the column's name (exact, ASCII str) */
    char *member;      /* '"name":' */
    Py_ssize_t member_len;
    Py_ssize_t input;  /* position in the values given, -1 for "source" */
    int kind;
} Field;

typedef struct {
    PyObject_HEAD
    Py_ssize_t inputs; /* how many values a call gives (skipped positions included) */
    Py_ssize_t nfields;
    Field *fields;     /* in canonical order, "source" among them */
    char *source;      /* the source's JSON string */
    Py_ssize_t source_len;
    PyObject *loads;   /* JSON text -> value, for K_JSON */
    PyObject *parsed;  /* leaves.Parsed: (text, value) */
} Plan;

static void
plan_clear_fields(Plan *self)
{
    if (self->fields != NULL) {
        for (Py_ssize_t i = 0; i < self->nfields; i++) {
            Py_XDECREF(self->fields[i].name);
            PyMem_Free(self->fields[i].member);
        }
        PyMem_Free(self->fields);
        self->fields = NULL;
    }
    PyMem_Free(self->source);
    self->source = NULL;
}

static int
plan_traverse(Plan *self, visitproc visit, void *arg)
{
    Py_VISIT(self->loads);
    Py_VISIT(self->parsed);
    return 0;
}

static int
plan_clear(Plan *self)
{
    Py_CLEAR(self->loads);
    Py_CLEAR(self->parsed);
    return 0;
}

static void
plan_dealloc(Plan *self)
{
    PyObject_GC_UnTrack(self);
    plan_clear(self);
    plan_clear_fields(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* '"text"' for an ASCII name without characters to escape, else NULL with ValueError. */
static char *
plain_json_string(PyObject *name, const char *suffix, Py_ssize_t *len)
{
    if (!PyUnicode_CheckExact(name) || !PyUnicode_IS_ASCII(name)) {
        PyErr_SetString(PyExc_ValueError, "names must be ASCII str");
        return NULL;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(name);
    const unsigned char *p = PyUnicode_1BYTE_DATA(name);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (ESCAPE[p[i]]) {
            PyErr_SetString(PyExc_ValueError, "names must need no escapes");
            return NULL;
        }
    }
    size_t extra = strlen(suffix);
    char *out = PyMem_Malloc((size_t)n + 2 + extra + 1);
    if (out == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    out[0] = '"';
    memcpy(out + 1, p, (size_t)n);
    out[n + 1] = '"';
    memcpy(out + n + 2, suffix, extra + 1);
    *len = n + 2 + (Py_ssize_t)extra;
    return out;
}

static int
field_cmp(const void *a, const void *b)
{
    return key_cmp(((const Field *)a)->name, ((const Field *)b)->name);
}

/* Plan(source, names, kinds, loads, parsed): names and kinds per input position (a name of
 * None: a position the leaf skips); kinds as in KIND_NAMES. */
static int
plan_init(Plan *self, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"source", "names", "kinds", "loads", "parsed", NULL};
    PyObject *source, *names, *kinds, *loads, *parsed;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "UOOOO:Plan", keywords, &source, &names,
                                     &kinds, &loads, &parsed)) {
        return -1;
    }
    if (self->fields != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a Plan is set up once");
        return -1;
    }
    if (!PyCallable_Check(loads) || !PyType_Check(parsed)) {
        PyErr_SetString(PyExc_TypeError, "loads must be callable and parsed a type");
        return -1;
    }
    PyObject *name_list = PySequence_Tuple(names);
    if (name_list == NULL) {
        return -1;
    }
    PyObject *kind_list = PySequence_Tuple(kinds);
    if (kind_list == NULL) {
        Py_DECREF(name_list);
        return -1;
    }
    Py_ssize_t inputs = PyTuple_GET_SIZE(name_list);
    if (PyTuple_GET_SIZE(kind_list) != inputs) {
        PyErr_SetString(PyExc_ValueError, "one kind per name");
        goto fail;
    }
    self->fields = PyMem_Calloc((size_t)inputs + 1, sizeof(Field));
    if (self->fields == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    self->inputs = inputs;
    self->nfields = 0;
    for (Py_ssize_t i = 0; i < inputs; i++) {
        PyObject *name = PyTuple_GET_ITEM(name_list, i);
        if (name == Py_None) {
            continue;
        }
        PyObject *kind_name = PyTuple_GET_ITEM(kind_list, i);
        int kind = -1;
        for (int k = 0; KIND_NAMES[k] != NULL; k++) {
            if (PyUnicode_Check(kind_name) &&
                PyUnicode_CompareWithASCIIString(kind_name, KIND_NAMES[k]) == 0) {
                kind = k;
            }
        }
        if (kind < 0) {
            PyErr_Format(PyExc_ValueError, "unknown kind %R", kind_name);
            goto fail;
        }
        Field *f = &self->fields[self->nfields];
        f->member = plain_json_string(name, ":", &f->member_len);
        if (f->member == NULL) {
            goto fail;
        }
        Py_INCREF(name);
        f->name = name;
        f->input = i;
        f->kind = kind;
        self->nfields++;
        if (PyUnicode_CompareWithASCIIString(name, "source") == 0) {
            PyErr_SetString(PyExc_ValueError, "\"source\" is the leaf's own member");
            goto fail;
        }
    }
    Field *f = &self->fields[self->nfields];
    f->name = PyUnicode_FromString("source");
    if (f->name == NULL) {
        goto fail;
    }
    f->input = -1;
    f->kind = K_SOURCE;
    self->nfields++;
    f->member = plain_json_string(f->name, ":", &f->member_len);
    if (f->member == NULL) {
        goto fail;
    }
    self->source = plain_json_string(source, "", &self->source_len);
    if (self->source == NULL) {
        goto fail;
    }
    qsort(self->fields, (size_t)self->nfields, sizeof(Field), field_cmp);
    for (Py_ssize_t i = 1; i < self->nfields; i++) {
        if (key_cmp(self->fields[i - 1].name, self->fields[i].name) == 0) {
            PyErr_Format(PyExc_ValueError, "%R given twice", self->fields[i].name);
            goto fail;
        }
    }
    Py_INCREF(loads);
    Py_XSETREF(self->loads, loads);
    Py_INCREF(parsed);
    Py_XSETREF(self->parsed, parsed);
    Py_DECREF(name_list);
    Py_DECREF(kind_list);
    return 0;
fail:
    plan_clear_fields(self);
    self->nfields = 0;
    Py_DECREF(name_list);
    Py_DECREF(kind_list);
    return -1;
}

static int
write_json_text(Plan *self, Buf *b, PyObject *v)
{
    if (Py_TYPE(v) == (PyTypeObject *)self->parsed) {
        if (!PyTuple_Check(v) || PyTuple_GET_SIZE(v) != 2) {
            return UNSUPPORTED;
        }
        return write_value(b, PyTuple_GET_ITEM(v, 1), 0);
    }
    if (!PyUnicode_CheckExact(v) && !PyBytes_CheckExact(v)) {
        return UNSUPPORTED;
    }
    PyObject *value = PyObject_CallOneArg(self->loads, v);
    if (value == NULL) {
        return called_failed(); /* e.g. 1e400, which the Python path reads exactly */
    }
    int r = write_value(b, value, 0);
    Py_DECREF(value);
    return r;
}

static int
write_field(Plan *self, Buf *b, const Field *f, PyObject *v)
{
    switch (f->kind) {
    case K_TEXT:
        return PyUnicode_CheckExact(v) ? write_str(b, v) : UNSUPPORTED;
    case K_INTEGER:
        return PyLong_CheckExact(v) ? write_int(b, v) : UNSUPPORTED;
    case K_TIMESTAMP:
        return write_timestamp(b, v);
    case K_UUID:
        return write_uuid(b, v);
    case K_BYTES:
        return write_bytes(b, v);
    case K_ARRAY:
        if (PyList_CheckExact(v) || PyTuple_CheckExact(v)) {
            return write_sequence(b, v, 0);
        }
        return UNSUPPORTED;
    case K_INET:
        /* PostgreSQL's inet::text, with its prefix length; other forms: the Python path. */
        if (PyUnicode_CheckExact(v) &&
            PyUnicode_FindChar(v, '/', 0, PyUnicode_GET_LENGTH(v), 1) >= 0) {
            return write_str(b, v);
        }
        return UNSUPPORTED;
    case K_JSON:
        return write_json_text(self, b, v);
    case K_VALUE:
        return write_value(b, v, 0);
    default:
        return put(b, self->source, self->source_len);
    }
}

/* The leaf of the values items[0..n) followed by more[0..m). */
static PyObject *
plan_write(Plan *self, PyObject *const *items, Py_ssize_t n, PyObject *const *more,
           Py_ssize_t m, int prefixed)
{
    if (self->fields == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Plan not set up");
        return NULL;
    }
    if (n + m != self->inputs) {
        PyErr_Format(PyExc_ValueError, "%zd values given for %zd names", n + m, self->inputs);
        return NULL;
    }
    char stack[STACK_BYTES];
    Buf b = {stack, 0, STACK_BYTES, 0};
    int r = DONE;
    if (prefixed) {
        b.data[b.len++] = '\0'; /* RFC 6962's leaf prefix */
    }
    b.data[b.len++] = '{';
    int first = 1;
    for (Py_ssize_t i = 0; i < self->nfields; i++) {
        const Field *f = &self->fields[i];
        PyObject *v = NULL;
        if (f->input >= 0) {
            v = f->input < n ? items[f->input] : more[f->input - n];
            if (v == Py_None && f->kind != K_VALUE) {
                continue; /* NULL columns are left out of the leaf */
            }
        }
        if (!first && (r = put_char(&b, ',')) < 0) {
            goto done;
        }
        first = 0;
        if ((r = put(&b, f->member, f->member_len)) < 0) {
            goto done;
        }
        if ((r = write_field(self, &b, f, v)) != DONE) {
            goto done;
        }
    }
    r = put_char(&b, '}');
done:;
    return finish(&b, r);
}

static PyObject *
plan_call(Plan *self, PyObject *const *args, Py_ssize_t nargs, int prefixed)
{
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "encode(values, *more) takes the values");
        return NULL;
    }
    PyObject *values = args[0];
    if (PyTuple_Check(values)) {
        return plan_write(self, &PyTuple_GET_ITEM(values, 0), PyTuple_GET_SIZE(values),
                          args + 1, nargs - 1, prefixed);
    }
    if (PyList_Check(values)) {
        /* A copy: the list may not change while it is read. */
        PyObject *copy = PyList_AsTuple(values);
        if (copy == NULL) {
            return NULL;
        }
        PyObject *result = plan_write(self, &PyTuple_GET_ITEM(copy, 0),
                                      PyTuple_GET_SIZE(copy), args + 1, nargs - 1, prefixed);
        Py_DECREF(copy);
        return result;
    }
    PyErr_SetString(PyExc_TypeError, "values must be a tuple or a list");
    return NULL;
}

static PyObject *
plan_encode(Plan *self, PyObject *const *args, Py_ssize_t nargs)
{
    return plan_call(self, args, nargs, 0);
}

static PyObject *
plan_encode_prefixed(Plan *self, PyObject *const *args, Py_ssize_t nargs)
{
    return plan_call(self, args, nargs, 1);
}

/* The leaf of {name: value} (a missing name counts as NULL). */
static PyObject *
plan_encode_mapping(Plan *self, PyObject *mapping)
{
    if (!PyDict_Check(mapping)) {
        PyErr_SetString(PyExc_TypeError, "encode_mapping takes a dict");
        return NULL;
    }
    if (self->fields == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Plan not set up");
        return NULL;
    }
    PyObject *values = PyTuple_New(self->inputs);
    if (values == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < self->inputs; i++) {
        Py_INCREF(Py_None);
        PyTuple_SET_ITEM(values, i, Py_None);
    }
    for (Py_ssize_t i = 0; i < self->nfields; i++) {
        const Field *f = &self->fields[i];
        if (f->input < 0) {
            continue;
        }
        PyObject *v = PyDict_GetItemWithError(mapping, f->name);
        if (v == NULL) {
            if (PyErr_Occurred()) {
                Py_DECREF(values);
                return NULL;
            }
            continue;
        }
        Py_INCREF(v);
        Py_SETREF(PyTuple_GET_ITEM(values, f->input), v);
    }
    PyObject *result = plan_write(self, &PyTuple_GET_ITEM(values, 0), self->inputs, NULL, 0, 0);
    Py_DECREF(values);
    return result;
}

static PyMethodDef plan_methods[] = {
    {"encode", (PyCFunction)(void (*)(void))plan_encode, METH_FASTCALL,
     "encode(values, *more) -> bytes | None: the leaf of the values (a tuple or list, then "
     "any further values), given in the order of the names; None where only the Python "
     "path is exact."},
    {"encode_prefixed", (PyCFunction)(void (*)(void))plan_encode_prefixed, METH_FASTCALL,
     "As encode, with RFC 6962's 0x00 leaf prefix before the leaf bytes (what SHA-256 "
     "hashes into the leaf hash)."},
    {"encode_mapping", (PyCFunction)plan_encode_mapping, METH_O,
     "encode_mapping(row: dict) -> bytes | None: as encode, the values by name."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject PlanType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "auditor.evidence._leafc.Plan",
    .tp_doc = "Plan(source, names, kinds, loads, parsed): the leaf encoding of one source.",
    .tp_basicsize = sizeof(Plan),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)plan_init,
    .tp_dealloc = (destructor)plan_dealloc,
    .tp_traverse = (traverseproc)plan_traverse,
    .tp_clear = (inquiry)plan_clear,
    .tp_methods = plan_methods,
};

/* ---- module ---------------------------------------------------------------------------- */

static PyObject *
module_dumps(PyObject *module, PyObject *value)
{
    char stack[STACK_BYTES];
    Buf b = {stack, 0, STACK_BYTES, 0};
    int r = write_value(&b, value, 0);
    return finish(&b, r);
}

static PyMethodDef module_methods[] = {
    {"dumps", module_dumps, METH_O,
     "dumps(value) -> bytes | None: RFC 8785 bytes of a JSON value (exact dict, list, str, "
     "int within int64, bool, None), or None where only the Python reference is exact."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef leafc_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "auditor.evidence._leafc",
    .m_doc = "Leaf bytes (RFC 8785) in C; see auditor/evidence/leaves.py.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__leafc(void)
{
    for (int c = 0; c < 0x20; c++) {
        ESCAPE[c] = 1;
    }
    ESCAPE['"'] = 1;
    ESCAPE['\\'] = 1;
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) {
        return NULL;
    }
    if (UUID_TYPE == NULL) {
        PyObject *uuid = PyImport_ImportModule("uuid");
        if (uuid == NULL) {
            return NULL;
        }
        UUID_TYPE = PyObject_GetAttrString(uuid, "UUID");
        Py_DECREF(uuid);
        if (UUID_TYPE == NULL) {
            return NULL;
        }
        STR_INT = PyUnicode_InternFromString("int");
        STR_UTCOFFSET = PyUnicode_InternFromString("utcoffset");
        SIXTY_FOUR = PyLong_FromLong(64);
        if (STR_INT == NULL || STR_UTCOFFSET == NULL || SIXTY_FOUR == NULL) {
            return NULL;
        }
    }
    if (PyType_Ready(&PlanType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&leafc_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddIntConstant(module, "MAX_DEPTH", MAX_DEPTH) < 0 ||
        PyModule_AddObjectRef(module, "Plan", (PyObject *)&PlanType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
