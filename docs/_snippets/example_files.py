import numpy as np
import hyperunmix as hu

scene = hu.synthetic.make_scene(64, 64, 4, abundances="fields", seed=0)
for path in ("scene.hdr", "scene.tif", "scene.nc", "scene.mat", "scene.npz"):
    hu.io.write_scene(path, scene)      # cube, wavelengths, bad bands, georeferencing
np.save("pixels.npy", scene.pixels())   # an (N, L) pixel matrix, without its image size
np.savez("truth.npz", abundances=scene.truth.abundances, endmembers=scene.truth.endmembers)
