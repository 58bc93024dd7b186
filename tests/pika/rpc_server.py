#!/usr/bin/env python
# RabbitMQ tutorial 6, "RPC" (rpc_server.py), unchanged except for the port
# (AMQP_PORT) and the marked lines that end it after $MESSAGES requests or
# $TIMEOUT seconds, so a test terminates.
import os
import pika

connection = pika.BlockingConnection(
    pika.ConnectionParameters(host='localhost', port=int(os.environ['AMQP_PORT'])))

channel = connection.channel()

channel.queue_declare(queue='rpc_queue')

def fib(n):
    if n == 0:
        return 0
    elif n == 1:
        return 1
    else:
        return fib(n - 1) + fib(n - 2)

received = 0  # test change

def on_request(ch, method, props, body):
    n = int(body)

    print(f" [.] fib({n})")
    response = fib(n)

    ch.basic_publish(exchange='',
                     routing_key=props.reply_to,
                     properties=pika.BasicProperties(correlation_id = \
                                                         props.correlation_id),
                     body=str(response))
    ch.basic_ack(delivery_tag=method.delivery_tag)
    global received  # test change: stop after $MESSAGES
    received += 1
    if received == int(os.environ.get('MESSAGES', '1')):
        ch.stop_consuming()

channel.basic_qos(prefetch_count=1)
channel.basic_consume(queue='rpc_queue', on_message_callback=on_request)
# test change: give up after $TIMEOUT seconds
connection.call_later(float(os.environ.get('TIMEOUT', '10')), channel.stop_consuming)

print(" [x] Awaiting RPC requests")
channel.start_consuming()
