/**
 * The server side of {@link LOOKUP_PROTOCOL}: GET_PROVIDERS answered from the provider index alone (provider ids,
 * no addresses, no closer peers) and FIND_NODE answered from the view with the addresses identify gave, on
 * streams the asker reuses. Requests are answered as their frames arrive, in order; a stream closes after an idle
 * spell or when the asker closes its side, and a peer that asks faster than it reads is not read from until its
 * answers drain.
 */
import type { Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Libp2p } from 'libp2p'
import type { Logger } from 'pino'
import { toString as bytesToString } from 'uint8arrays/to-string'
import {
  ID_BYTES_CACHE_SIZE,
  K,
  LOOKUP_MAX_INBOUND_STREAMS,
  LOOKUP_PROTOCOL,
  LOOKUP_STREAM_IDLE_MS
} from './constants.ts'
import type { DatagramLookups } from './datagrams.ts'
import { FrameChannel } from './frames.ts'
import {
  decodeMessage,
  encodeMessage,
  type KadMessage,
  MAX_MESSAGE_BYTES,
  MessageType
} from './kad-message.ts'
import { kadId } from './keys.ts'
import type { ProviderDatastore } from './provider-datastore.ts'
import type { ClusterView } from './view.ts'

/** Options of {@link handleLookups}. */
export interface LookupServerInit {
  libp2p: Libp2p
  datastore: ProviderDatastore
  view: ClusterView
  /** Providers not to serve (gossip mode: members declared dead or gone). */
  gone?: (peer: string) => boolean
  /** Lookups over UDP (gossip mode), answered as the protocol's. */
  datagrams?: DatagramLookups
  log: Logger
}

/** Answers one lookup-protocol request. */
export type LookupAnswerer = (message: KadMessage) => KadMessage

/**
 * The answers of the lookup protocol, from the provider index and the view. `gone`: providers known to be dead or
 * gone (gossip mode), whose records are kept until they expire but not served (a provider that comes back is
 * served again at once).
 */
export function lookupAnswerer(
  datastore: ProviderDatastore,
  view: ClusterView,
  gone: (peer: string) => boolean = () => false
): LookupAnswerer {
  /** Provider ids as multihash bytes (a few hundred peers at most). */
  const idBytes = new Map<string, Uint8Array>()
  const idBytesOf = (peer: string): Uint8Array => {
    let bytes = idBytes.get(peer)
    if (bytes === undefined) {
      bytes = peerIdFromString(peer).toMultihash().bytes
      if (idBytes.size > ID_BYTES_CACHE_SIZE) idBytes.clear()
      idBytes.set(peer, bytes)
    }
    return bytes
  }
  return (message) => {
    const answer: KadMessage = { type: message.type, closer: [], providers: [] }
    if (message.key === undefined) return answer
    if (message.type === MessageType.GET_PROVIDERS) {
      answer.key = message.key
      answer.providers = datastore
        .providersOf(bytesToString(message.key, 'base32'))
        .filter((peer) => !gone(peer))
        .map((peer) => ({ id: idBytesOf(peer), multiaddrs: [] }))
    } else if (message.type === MessageType.FIND_NODE) {
      // Peer exchange, answered from the view (the stock handler reads the peer store for every peer).
      answer.key = message.key
      answer.closer = view
        .closest(kadId(message.key), K)
        .filter((m) => m.addresses.length > 0)
        .map((m) => ({ id: m.id.toMultihash().bytes, multiaddrs: m.addresses.map((a) => a.bytes) }))
    }
    return answer
  }
}

/**
 * Serves one request stream with `answer` (lookup and claim streams): each frame a request, answered in order;
 * closed after an idle spell or when the asker closes its side.
 */
export function serveRequestStream(stream: Stream, answer: LookupAnswerer, log: Logger): void {
  const close = (): void => {
    stream.close().catch((err: unknown) => stream.abort(err as Error))
  }
  const idle = setTimeout(close, LOOKUP_STREAM_IDLE_MS)
  idle.unref()
  const channel = new FrameChannel(stream, MAX_MESSAGE_BYTES, {
    frame: (bytes) => {
      idle.refresh()
      const sent = channel.send(encodeMessage(answer(decodeMessage(bytes))))
      if (!sent && stream.readStatus === 'readable') {
        stream.pause()
        stream.addEventListener('drain', () => stream.readStatus === 'paused' && stream.resume(), {
          once: true
        })
      }
    },
    end: (error) => {
      clearTimeout(idle)
      if (error === undefined) {
        close()
        return
      }
      if (stream.status === 'open') {
        log.debug({ err: error }, 'request stream ended')
        stream.abort(error)
      }
    }
  })
}

/** Registers the handler of {@link LOOKUP_PROTOCOL}. */
export async function handleLookups(init: LookupServerInit): Promise<void> {
  const answer = lookupAnswerer(init.datastore, init.view, init.gone)
  init.datagrams?.serve(answer)
  await init.libp2p.handle(
    LOOKUP_PROTOCOL,
    (stream: Stream) => serveRequestStream(stream, answer, init.log),
    {
      maxInboundStreams: LOOKUP_MAX_INBOUND_STREAMS
    }
  )
}
