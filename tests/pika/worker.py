#!/usr/bin/env python
# RabbitMQ tutorial 2, "Work queues" (worker.py), unchanged except for the port
# (AMQP_PORT) and the marked line that ends it after $TIMEOUT seconds, so a
# test terminates (the test stops it sooner, once every task is done).
import os
import pika
import time

connection = pika.BlockingConnection(
    pika.ConnectionParameters(host='localhost', port=int(os.environ['AMQP_PORT'])))
channel = connection.channel()

channel.queue_declare(queue='task_queue', durable=True)
print(' [*] Waiting for messages. To exit press CTRL+C')


def callback(ch, method, properties, body):
    print(f" [x] Received {body.decode()}")
    time.sleep(body.count(b'.'))
    print(" [x] Done")
    ch.basic_ack(delivery_tag=method.delivery_tag)


channel.basic_qos(prefetch_count=1)
channel.basic_consume(queue='task_queue', on_message_callback=callback)
# test change: stop after $TIMEOUT seconds
connection.call_later(float(os.environ.get('TIMEOUT', '10')), channel.stop_consuming)

channel.start_consuming()
