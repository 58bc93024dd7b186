#!/usr/bin/env python
# RabbitMQ tutorial 5, "Topics" (receive_logs_topic.py), unchanged except for
# the port (AMQP_PORT) and the marked lines that end it after $MESSAGES messages
# or $TIMEOUT seconds, so a test terminates.
import os
import pika
import sys

connection = pika.BlockingConnection(
    pika.ConnectionParameters(host='localhost', port=int(os.environ['AMQP_PORT'])))
channel = connection.channel()

channel.exchange_declare(exchange='topic_logs', exchange_type='topic')

result = channel.queue_declare('', exclusive=True)
queue_name = result.method.queue

binding_keys = sys.argv[1:]
if not binding_keys:
    sys.stderr.write("Usage: %s [binding_key]...\n" % sys.argv[0])
    sys.exit(1)

for binding_key in binding_keys:
    channel.queue_bind(
        exchange='topic_logs', queue=queue_name, routing_key=binding_key)

print(' [*] Waiting for logs. To exit press CTRL+C')

received = 0  # test change


def callback(ch, method, properties, body):
    print(f" [x] {method.routing_key}:{body}")
    global received  # test change: stop after $MESSAGES
    received += 1
    if received == int(os.environ.get('MESSAGES', '1')):
        ch.stop_consuming()


channel.basic_consume(
    queue=queue_name, on_message_callback=callback, auto_ack=True)
# test change: give up after $TIMEOUT seconds
connection.call_later(float(os.environ.get('TIMEOUT', '10')), channel.stop_consuming)

channel.start_consuming()
