/**
 * A small typed client for the parts of containerd's gRPC API kadmirror uses — images (List), content (Info,
 * Read) and events (Subscribe) — from our own `.proto` subset (proto/), which keeps containerd's package,
 * service and message names and field numbers. Every call carries the `containerd-namespace` metadata.
 */
import { fileURLToPath } from 'node:url'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'

const PROTO_DIR = fileURLToPath(new URL('../proto', import.meta.url))
const PROTO_FILES = [
  'containerd/services/images/v1/images.proto',
  'containerd/services/content/v1/content.proto',
  'containerd/services/events/v1/events.proto',
  'containerd/events/image.proto',
  'containerd/events/content.proto'
]

/** A descriptor as containerd sends it. */
export interface WireDescriptor {
  mediaType: string
  digest: string
  size: number
}

/** An image record of containerd's images service. */
export interface WireImage {
  name: string
  target?: WireDescriptor
  labels: Record<string, string>
}

/** An event envelope of containerd's events service. */
export interface WireEnvelope {
  namespace: string
  topic: string
  event?: { typeUrl: string; value: Buffer }
}

type Callback<T> = (err: grpc.ServiceError | null, value?: T) => void
type UnaryCall<Req, Res> = (
  request: Req,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
  callback: Callback<Res>
) => grpc.ClientUnaryCall
type StreamCall<Req, Res> = (
  request: Req,
  metadata: grpc.Metadata,
  options?: grpc.CallOptions
) => grpc.ClientReadableStream<Res>

interface ImagesClient extends grpc.Client {
  List: UnaryCall<{ filters: string[] }, { images: WireImage[] }>
}
interface ContentClient extends grpc.Client {
  Info: UnaryCall<{ digest: string }, { info?: { digest: string; size: number } }>
  List: StreamCall<{ filters: string[] }, { info: { digest: string; size: number }[] }>
  Read: StreamCall<{ digest: string; offset: number; size: number }, { offset: number; data: Buffer }>
}
interface EventsClient extends grpc.Client {
  Subscribe: StreamCall<{ filters: string[] }, WireEnvelope>
}

let definitions: grpc.GrpcObject | undefined

function loadDefinitions(): grpc.GrpcObject {
  definitions ??= grpc.loadPackageDefinition(
    protoLoader.loadSync(PROTO_FILES, {
      includeDirs: [PROTO_DIR],
      keepCase: false,
      longs: Number,
      enums: String,
      defaults: true,
      oneofs: true
    })
  )
  return definitions
}

function service<T>(
  path: string
): new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options?: grpc.ChannelOptions
) => T {
  let node: unknown = loadDefinitions()
  for (const part of path.split('.')) node = (node as Record<string, unknown>)[part]
  return node as new (
    address: string,
    credentials: grpc.ChannelCredentials,
    options?: grpc.ChannelOptions
  ) => T
}

/** The containerd API as kadmirror uses it. */
export interface ContainerdClient {
  /** Every image of the namespace. */
  listImages(signal?: AbortSignal): Promise<WireImage[]>
  /** Size of a digest's content, or undefined when containerd does not have it. */
  info(digest: string, signal?: AbortSignal): Promise<number | undefined>
  /** Every digest the namespace holds, with its size. */
  listContent(): Promise<Map<string, number>>
  /** Streams `size` bytes (0: to the end) of a digest from `offset`. Throws NOT_FOUND as a ServiceError. */
  read(digest: string, offset: number, size: number, signal?: AbortSignal): AsyncIterable<Buffer>
  /** Event envelopes matching `filters`, until cancelled or the connection drops. */
  subscribe(filters: string[]): grpc.ClientReadableStream<WireEnvelope>
  /** Waits until the socket is connected, or rejects after `timeoutMs`. */
  waitForReady(timeoutMs: number): Promise<void>
  close(): void
}

/** True for a gRPC NOT_FOUND error. */
export function isNotFound(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === grpc.status.NOT_FOUND
}

/** Connects to containerd at `address` (a unix socket path) for `namespace`. */
export function createContainerdClient(address: string, namespace: string): ContainerdClient {
  const target = address.includes('://') ? address : `unix://${address}`
  const credentials = grpc.credentials.createInsecure()
  const options: grpc.ChannelOptions = {
    'grpc.max_receive_message_length': 16 * 1024 * 1024,
    // Reconnect quickly after containerd restarts.
    'grpc.initial_reconnect_backoff_ms': 100,
    'grpc.max_reconnect_backoff_ms': 2000
  }
  const images = new (service<ImagesClient>('containerd.services.images.v1.Images'))(
    target,
    credentials,
    options
  )
  const channelOverride = images.getChannel()
  const content = new (service<ContentClient>('containerd.services.content.v1.Content'))(
    target,
    credentials,
    {
      ...options,
      channelOverride
    }
  )
  const events = new (service<EventsClient>('containerd.services.events.v1.Events'))(target, credentials, {
    ...options,
    channelOverride
  })
  const metadata = (): grpc.Metadata => {
    const m = new grpc.Metadata()
    m.set('containerd-namespace', namespace)
    return m
  }
  const unary = <Req, Res>(
    call: UnaryCall<Req, Res>,
    client: grpc.Client,
    request: Req,
    signal?: AbortSignal
  ): Promise<Res> =>
    new Promise((resolve, reject) => {
      const pending = call.call(client, request, metadata(), {}, (err, value) => {
        signal?.removeEventListener('abort', cancel)
        if (err !== null) reject(err)
        else resolve(value as Res)
      })
      const cancel = (): void => pending.cancel()
      signal?.addEventListener('abort', cancel, { once: true })
    })

  return {
    async listImages(signal) {
      return (await unary(images.List, images, { filters: [] }, signal)).images
    },
    async info(digest, signal) {
      try {
        return (await unary(content.Info, content, { digest }, signal)).info?.size
      } catch (err) {
        if (isNotFound(err)) return undefined
        throw err
      }
    },
    async listContent() {
      const present = new Map<string, number>()
      const stream = content.List.call(content, { filters: [] }, metadata())
      for await (const message of stream as AsyncIterable<{ info: { digest: string; size: number }[] }>) {
        for (const info of message.info) present.set(info.digest, info.size)
      }
      return present
    },
    async *read(digest, offset, size, signal) {
      const stream = content.Read.call(content, { digest, offset, size }, metadata())
      const cancel = (): void => stream.cancel()
      signal?.addEventListener('abort', cancel, { once: true })
      try {
        for await (const message of stream as AsyncIterable<{ data: Buffer }>) yield message.data
      } finally {
        signal?.removeEventListener('abort', cancel)
        stream.cancel()
      }
    },
    subscribe(filters) {
      return events.Subscribe.call(events, { filters }, metadata())
    },
    waitForReady(timeoutMs) {
      return new Promise((resolve, reject) => {
        images.waitForReady(Date.now() + timeoutMs, (err) =>
          err === undefined || err === null ? resolve() : reject(err)
        )
      })
    },
    close() {
      images.close()
    }
  }
}
