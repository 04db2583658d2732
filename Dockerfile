# The image the KubeRay manifests run (kuberay/rayjob-*.yaml, serve/rayservice.yaml): Ray as
# pinned in constraints.txt (2.60.0, Python 3.11, CUDA) with echoseek and its configs.
#   docker build -t ghcr.io/echoseek/echoseek:ray2.60.0-py311-gpu .
FROM rayproject/ray:2.60.0-py311-gpu
COPY --chown=ray:users . /home/ray/echoseek
RUN pip install --no-cache-dir -c /home/ray/echoseek/constraints.txt /home/ray/echoseek
WORKDIR /home/ray/echoseek
