"""The article's SageMaker Pipeline (prepare -> train -> infer -> notify) on our one image.

options.py and definition.py are SDK-free; builder.py is the only module of the package that
imports the SageMaker Python SDK (the optional extra `[pipeline]`); notify.py is the Lambda
handler (boto3 and the standard library only); rules.py the failure notification.
"""
