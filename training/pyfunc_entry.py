"""The model-as-code file logged with every version (MLflow "models from code").

MLflow copies this file into the model and runs it when the model is loaded, so no pickled
Python object is stored. Never imported by the package itself.
"""

import mlflow.models

from training.pyfunc_model import CalibratedPyfunc

mlflow.models.set_model(CalibratedPyfunc())
