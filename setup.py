from setuptools import find_packages, setup

setup(
    name="hipt",
    version="0.1.0",
    description="HIPT (Hierarchical Image Pyramid Transformer) for computational pathology: features, training, "
    "heatmaps, pretraining",
    packages=find_packages(include=["source", "source.*"]),
    # the viewer's pages load these (static/: OpenSeadragon, installed by `make viewer-assets`)
    package_data={"source.viewer": ["web/*", "static/openseadragon/*", "static/openseadragon/images/*"]},
    python_requires=">=3.10",
    install_requires=[],  # pinned in requirements.txt (torch must come from there)
)
