#!/usr/bin/env python
# RabbitMQ tutorial 3, "Publish/Subscribe" (emit_log.py), unchanged except for
# the port (AMQP_PORT).
import os
import pika
import sys

connection = pika.BlockingConnection(
    pika.ConnectionParameters(host='localhost', port=int(os.environ['AMQP_PORT'])))
channel = connection.channel()

channel.exchange_declare(exchange='logs', exchange_type='fanout')

message = ' '.join(sys.argv[1:]) or "info: Hello World!"
channel.basic_publish(exchange='logs', routing_key='', body=message)
print(f" [x] Sent {message}")
connection.close()
