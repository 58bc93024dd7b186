#!/usr/bin/env python
# RabbitMQ tutorial 3, "Publish/Subscribe" (receive_logs.py), unchanged except
# for the port (AMQP_PORT) and the marked lines that end it after $MESSAGES
# messages or $TIMEOUT seconds, so a test terminates.
import os
import pika

connection = pika.BlockingConnection(
    pika.ConnectionParameters(host='localhost', port=int(os.environ['AMQP_PORT'])))
channel = connection.channel()

channel.exchange_declare(exchange='logs', exchange_type='fanout')

result = channel.queue_declare(queue='', exclusive=True)
queue_name = result.method.queue

channel.queue_bind(exchange='logs', queue=queue_name)

print(' [*] Waiting for logs. To exit press CTRL+C')

received = 0  # test change

def callback(ch, method, properties, body):
    print(f" [x] {body}")
    global received  # test change: stop after $MESSAGES
    received += 1
    if received == int(os.environ.get('MESSAGES', '1')):
        ch.stop_consuming()

channel.basic_consume(
    queue=queue_name, on_message_callback=callback, auto_ack=True)
# test change: give up after $TIMEOUT seconds
connection.call_later(float(os.environ.get('TIMEOUT', '10')), channel.stop_consuming)

channel.start_consuming()
