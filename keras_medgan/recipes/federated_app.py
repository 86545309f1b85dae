"""The Flower app of the federated recipe, as module attributes a SuperLink / SuperNode loads (deployment mode).

``server_app`` reads its run folder from the run config key ``run-dir`` (``flwr run ... --run-config
"run-dir='runs/federated/00001-demo'"``; the recipe's ``--mode deployment`` writes that command for you);
``client_app`` finds its data through the SuperNode's ``--node-config`` (``data-dir`` or ``partition-id``).
Importing this module needs Flower (``pip install -e ".[federated]"``).
"""

from keras_medgan.federated.client import make_client_app
from keras_medgan.federated.server import make_server_app
from keras_medgan.recipes.federated import build_adapter

server_app = make_server_app(build_adapter)
client_app = make_client_app(build_adapter)
