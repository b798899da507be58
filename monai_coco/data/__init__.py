"""monai_coco.data"""
