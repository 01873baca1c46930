import { silentLogger } from 'keel';
import { createLocalTransport, within, type LocalTransport } from 'keel/transport';
import { describeTransportConformance } from './support/conformance.js';

// One in-process bus per namespace, shared by the kernels of one test application: each module
// runs in its own kernel, as if in its own process, and every call and event crosses the
// local transport.
const buses = new Map<string, LocalTransport>();

describeTransportConformance({
  name: 'local',
  createTransport: async (namespace) => {
    let bus = buses.get(namespace);
    if (bus === undefined) {
      bus = createLocalTransport({ logger: silentLogger, redeliveryDelayMs: 20 });
      buses.set(namespace, bus);
    }
    return bus;
  },
  closeTransport: async () => {},
  // Nothing being delivered and no retry waiting: the bus will deliver none of its events again.
  durableSettled: async (namespace) => {
    const bus = buses.get(namespace);
    if (bus === undefined) throw new Error(`durableSettled: no bus was made for application ${namespace}`);
    if (!(await within(bus.settled(), 15_000))) throw new Error(`durableSettled: application ${namespace}'s bus still delivers or retries events after 15 s`);
  },
});
