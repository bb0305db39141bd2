"""LoRA-train LaViDa on a SHIRG visual path (all logic lives in ``shirg_eval.training``).

    deepspeed train/lora.py --config configs/train/lora_r64.yaml [--key value ...]
    deepspeed --num_gpus 8 train/lora.py --config configs/train/lora_r64.yaml --deepspeed configs/deepspeed/zero3.json
    python train/lora.py --config configs/train/tiny_cpu.yaml --max_steps 20       # single process, no launcher
    python train/lora.py --config configs/train/tiny_cpu.yaml --resume             # continue from OUT/latest
"""

from shirg_eval.training.trainer import main

if __name__ == "__main__":
    main()
