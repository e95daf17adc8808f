"""Stand-in for the AWS IoT Greengrass Core SDK as a DeepLens Lambda uses it, for rehearsing the Lambda on this
machine: `greengrasssdk.client('iot-data').publish(topic=..., payload=...)` (the Developer Guide's inference template
sends its results so, to `$aws/things/<AWS_IOT_THING_NAME>/infer`). The real SDK ships inside the Lambda zip; here
every message is kept in `published` as (topic, payload) instead of going to AWS IoT.
"""

published = []


class _IotDataClient:
    def publish(self, topic, payload, **kwargs):
        published.append((topic, payload))


def client(client_type):
    if client_type != "iot-data":
        raise ValueError(f"the stand-in has only the 'iot-data' client, not '{client_type}'")
    return _IotDataClient()
