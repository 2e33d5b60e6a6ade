"""What can be segmented besides a folder of FLARE ``<case>_0000.nii.gz`` files, each in its own module:

- :mod:`inference.inputs.cases`: the cases of an input (one file, a FLARE folder as before, a folder of other 3D
  images and DICOM series) and why each other entry is skipped;
- :mod:`inference.inputs.dicom_series`: finding DICOM series in a folder and reading one (gantry tilt and uneven
  slice spacing refused);
- :mod:`inference.inputs.read_case`: one case, whatever its kind, as a :class:`~inference.ct_io.CTVolume`;
- :mod:`inference.inputs.hu_check`: whether an image's intensities can be CT in Hounsfield units, and the +1024
  offset of exports without the rescale intercept.
"""
