/**
 * The NestJS peer of the peers benchmark (bench/peers.ts), in a process of its own:
 * `tsx bench/nest-peer.ts <nats url>` starts a NestJS microservice over
 * NATS (Nest's NATS transport, `@nats-io/transport-node`) whose `@MessagePattern('pricing.quote')`
 * handler does the work of keel's quote handler (bench/fixture.ts). No validation (Nest validates
 * only through a pipe, such as ValidationPipe with class-validator, which is not installed).
 * tsx (esbuild) emits no decorator metadata, so nothing here relies on it: no constructor
 * injection, the handler takes its payload as its first argument (Nest's default).
 * Prints `ready` once serving, answers `cpu` with its CPU time (µs), exits when stdin closes.
 */
import 'reflect-metadata';
import { Controller, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { MessagePattern, Transport, type MicroserviceOptions } from '@nestjs/microservices';
import { quote } from './fixture.js';
import { servePeer } from './peer.js';

const [url] = process.argv.slice(2);
if (url === undefined) {
  console.error('usage: nest-peer.ts <nats url>');
  process.exit(2);
}

@Controller()
class PricingController {
  @MessagePattern('pricing.quote')
  quote(input: Parameters<typeof quote>[0]): ReturnType<typeof quote> {
    return quote(input);
  }
}

@Module({ controllers: [PricingController] })
class PricingModule {}

const app = await NestFactory.createMicroservice<MicroserviceOptions>(PricingModule, {
  transport: Transport.NATS,
  options: { servers: [url], queue: 'pricing' },
  logger: false,
});
await app.listen();
servePeer('ready', () => app.close());
