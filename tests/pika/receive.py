#!/usr/bin/env python
# RabbitMQ tutorial 1, "Hello World!" (receive.py), unchanged except for the
# port (AMQP_PORT) and the marked lines that end it after $MESSAGES messages or
# $TIMEOUT seconds, so a test terminates.
import pika, sys, os

def main():
    connection = pika.BlockingConnection(
        pika.ConnectionParameters(host='localhost', port=int(os.environ['AMQP_PORT'])))
    channel = connection.channel()

    channel.queue_declare(queue='hello')

    received = 0  # test change

    def callback(ch, method, properties, body):
        print(f" [x] Received {body}")
        nonlocal received  # test change: stop after $MESSAGES
        received += 1
        if received == int(os.environ.get('MESSAGES', '1')):
            ch.stop_consuming()

    channel.basic_consume(queue='hello', on_message_callback=callback, auto_ack=True)
    # test change: give up after $TIMEOUT seconds
    connection.call_later(float(os.environ.get('TIMEOUT', '10')), channel.stop_consuming)

    print(' [*] Waiting for messages. To exit press CTRL+C')
    channel.start_consuming()

if __name__ == '__main__':
    try:
        main()
    except KeyboardInterrupt:
        print('Interrupted')
        try:
            sys.exit(0)
        except SystemExit:
            os._exit(0)
