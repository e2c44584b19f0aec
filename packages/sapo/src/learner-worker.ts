/**
 * The learner worker's side (run by startLearnerWorker in a `worker_threads` worker): loads the model
 * from `workerData`, then answers each request from the main thread with the in-thread learner's
 * result, one at a time, in order. Errors go back as data, so the caller's promise rejects with the
 * same typed error; an uncaught one ends the worker, and the caller sees LearnerCrashedError.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { type Learner, type LearnerSpec, openLearner } from './learner.js';
import { type Reply, type Request, serializeError } from './learner-protocol.js';

const port = parentPort;
if (port === null) throw new Error('learner-worker.js runs only as a worker thread (see startLearnerWorker)');

let learner: Learner;
try {
  learner = await openLearner(workerData as LearnerSpec);
  port.postMessage({ type: 'ready', info: learner.info } satisfies Reply);
} catch (error) {
  port.postMessage({ type: 'failed', error: serializeError(error) } satisfies Reply);
  process.exit(1);
}

// Requests run one after another: the model is not reentrant, and the caller awaits each anyway.
let queue = Promise.resolve();
port.on('message', (request: Request) => {
  queue = queue.then(async () => {
    try {
      const value = await call(request);
      port.postMessage({ type: 'result', id: request.id, value, steps: learner.steps } satisfies Reply);
    } catch (error) {
      port.postMessage({ type: 'error', id: request.id, error: serializeError(error) } satisfies Reply);
    }
    if (request.method === 'close') port.close();
  });
});

function call(request: Request): Promise<unknown> {
  switch (request.method) {
    case 'sample':
      return learner.sample(...request.args);
    case 'step':
      return learner.step(...request.args);
    case 'save':
      return learner.save(...request.args);
    case 'memory':
      return learner.memory();
    case 'close':
      return learner.close();
  }
}
