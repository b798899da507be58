"""monai_coco.losses"""
