"""Reading NIfTI files without surprises: header checks, a full decode before ITK, native stderr folded into one line.

Shared by inference/ and evaluation/ (which import nothing from each other); imports only the standard library and
numpy.
"""
