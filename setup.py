"""The one part of the build pyproject.toml cannot say: the optional C extensions.

auditor/evidence/_leafc.c writes the record's leaf bytes (docs/evidence.md, "Leaf bytes in
C"); auditor/store/_udc.c compares each event's userData with the one before (docs/api.md,
"User-data filters"). Without a C compiler the build warns and goes on (``optional``), and
auditor uses the pure-Python code, which gives the same bytes and rows.
auditor/evidence/_leafcopy.c (verify's fast path, "The fast verify path" in docs/evidence.md)
needs OpenSSL's libcrypto and its headers; without them it is not built and verify reads
leaves the Python way. An editable install (``pip install -e .``, ``make test``) builds the
modules in place, next to their C files.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "auditor.evidence._leafc",
            sources=["auditor/evidence/_leafc.c"],
            optional=True,
        ),
        Extension(
            "auditor.evidence._leafcopy",
            sources=["auditor/evidence/_leafcopy.c"],
            libraries=["crypto", "dl"],
            optional=True,
        ),
        Extension(
            "auditor.store._udc",
            sources=["auditor/store/_udc.c"],
            optional=True,
        ),
    ]
)
