"""The one part of the build pyproject.toml cannot say: the optional C leaf encoder.

auditor/evidence/_leafc.c writes the record's leaf bytes (docs/evidence.md, "Leaf bytes in
C"); without a C compiler the build warns and goes on (``optional``), and auditor uses the
pure-Python encoder, which gives the same bytes. auditor/evidence/_leafcopy.c (verify's fast
path, "The fast verify path" there) needs OpenSSL's libcrypto and its headers; without them it
is not built and verify reads leaves the Python way. An editable install (``pip install -e .``,
``make test``) builds the module in place, next to the C file.
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
    ]
)
