// The learner behind a worker thread (needs `npm run build`: the worker runs the built dist/learner-worker.js).
import { EMBEDDED_MODEL_PATH, LearnerCrashedError, openLearner, startLearnerWorker } from '@swarm-node/sapo';
import { describe, expect, it } from 'vitest';

const spec = { model: EMBEDDED_MODEL_PATH, backend: 'wasm' as const, sapo: { localGroups: 2, externalGroups: 0 } };
const prompts = ['Sort these letters: c a b', 'Sort these letters: c a b', 'Reverse: abc', 'Reverse: abc'];

describe('a learner in a worker thread', () => {
  it('samples and steps exactly as the same learner on this thread', async () => {
    const run = async (learner: Awaited<ReturnType<typeof openLearner>>) => {
      const completions = await learner.sample(prompts, { maxNewTokens: 12, seed: 5 });
      const texts = completions.map((c) => c?.text ?? null);
      const report = await learner.step(
        [
          {
            prompt: prompts[0] as string,
            completions: texts.slice(0, 2) as string[],
            rewards: [1, 0],
            finished: [true, false],
          },
          { prompt: prompts[2] as string, completions: texts.slice(2) as string[], rewards: [0, 1] },
        ],
        [],
      );
      const after = await learner.sample(prompts.slice(0, 1), { maxNewTokens: 12, seed: 6, temperature: 0 });
      await learner.close();
      return { texts, losses: report.losses, steps: learner.steps, after: after[0]?.logProbs };
    };
    const worker = await run(await startLearnerWorker(spec));
    const inThread = await run(await openLearner(spec));
    expect(worker).toEqual(inThread);
    expect(worker.steps).toBe(1);
  });

  it('rejects a failed call with its error and keeps serving', async () => {
    const learner = await startLearnerWorker(spec);
    await expect(learner.save('/dev/null/checkpoints', {})).rejects.toThrow(/ENOTDIR|not a directory/);
    expect((await learner.sample(['x'.repeat(500), 'Reverse: ab'], { maxNewTokens: 4, seed: 1 }))[0]).toBeNull();
    await learner.close();
  });

  it('turns a worker that dies (out of memory) into LearnerCrashedError for the call and every later one', async () => {
    const learner = await startLearnerWorker(spec, { resourceLimits: { maxOldGenerationSizeMb: 48 } });
    const many = Array.from({ length: 400_000 }, (_, i) => `prompt ${i}`);
    await expect(learner.sample(many, { maxNewTokens: 4, seed: 1 })).rejects.toBeInstanceOf(LearnerCrashedError);
    await expect(learner.step([], [])).rejects.toMatchObject({ code: 'LEARNER_CRASHED' });
    await learner.close(); // resolves: nothing hangs
  });
});
