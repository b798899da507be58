"""monai_coco.engines"""
