#!/usr/bin/env python
# RabbitMQ tutorial 1, "Hello World!" (send.py), unchanged except for the port
# (AMQP_PORT), so the Tether test suite can run it against a gateway.
import os

import pika

connection = pika.BlockingConnection(
    pika.ConnectionParameters(host='localhost', port=int(os.environ['AMQP_PORT'])))
channel = connection.channel()

channel.queue_declare(queue='hello')

channel.basic_publish(exchange='', routing_key='hello', body='Hello World!')
print(" [x] Sent 'Hello World!'")
connection.close()
