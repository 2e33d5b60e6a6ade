"""What can be written for a segmented case beside its label map, each in its own module:

- :mod:`inference.outputs.case_images`: the case's CT and label map as SimpleITK images in the input's geometry,
  and the atomic image writer the other modules use;
- :mod:`inference.outputs.statistics`: volume (mL), HU statistics, voxel count and bounding box per organ, as JSON
  per case and CSV across cases;
- :mod:`inference.outputs.organ_masks`: one binary mask per organ (``liver.nii.gz``, ``kidney.nii.gz``, ...);
- :mod:`inference.outputs.preview`: a PNG with axial, coronal and sagittal views through each organ;
- :mod:`inference.outputs.dicom_seg`: a DICOM SEG object that references the source DICOM series.
"""
