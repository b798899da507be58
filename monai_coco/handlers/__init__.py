"""monai_coco.handlers"""
